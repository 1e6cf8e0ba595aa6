//! A decoder layer on Flex ([`crate::ops::TransformerBackend::decoder_layer`]): a decoding step (one
//! sequence, one token, f32 activations, every projection quantized without a bias) runs as
//! [`cpu::decoder_step`], the whole layer in one parallel region whose threads wait for each
//! other by spinning between its phases; anything else (a prompt, f16 activations, a dense or
//! biased projection) runs op by op. Both give the same values bit for bit.

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Bytes, DType};

use super::flex::words;
use crate::cpu::{self, KvCache, LayerShape, LayerWeights, Projection, Weight};
use crate::ops::Positions;
use crate::ops::layer::{self, DecoderLayerConfig, DecoderLayerWeights, KvBuffers, LayerLinear};

/// The layer over `x` `[batch, t, d_model]` (see
/// [`TransformerBackend::decoder_layer`](crate::ops::TransformerBackend::decoder_layer)).
pub(super) fn decoder_layer(
    x: FloatTensor<Flex>,
    w: DecoderLayerWeights<Flex>,
    cache: KvBuffers<Flex>,
    cos: FloatTensor<Flex>,
    sin: FloatTensor<Flex>,
    positions: Positions<Flex>,
    c: DecoderLayerConfig,
) -> (FloatTensor<Flex>, KvBuffers<Flex>) {
    if !is_step(&x, &w, &cache, (&cos, &sin), c) {
        return layer::forward::<Flex>(x, w, cache, cos, sin, positions, c);
    }
    let capacity = cache.k.layout().shape().to_vec()[2];
    let position = positions.first();
    let KvBuffers {
        k: mut kt,
        v: mut vt,
    } = cache;
    let weights = LayerWeights {
        attn_norm: f(&w.attn_norm),
        q: weight(&w.q),
        k: weight(&w.k),
        v: weight(&w.v),
        o: weight(&w.o),
        q_norm: f(&w.q_norm),
        k_norm: f(&w.k_norm),
        post_attn_norm: f(&w.post_attn_norm),
        ffn_norm: f(&w.ffn_norm),
        gate: weight(&w.gate),
        up: weight(&w.up),
        down: weight(&w.down),
        post_ffn_norm: f(&w.post_ffn_norm),
    };
    let shape = LayerShape {
        heads: c.n_heads,
        kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        eps: c.eps,
        window: c.window,
        scale: c.scale as f32,
    };
    // written in place where nothing else holds the buffers (else copied first, as a slice
    // assignment would)
    let kv = KvCache {
        k: kt.storage_mut::<f32>(),
        v: vt.storage_mut::<f32>(),
        capacity,
    };
    let y = cpu::decoder_step(f(&x), &weights, kv, (f(&cos), f(&sin)), position, shape)
        .unwrap_or_else(|e| panic!("{e}"));
    let y = FlexTensor::new(
        Bytes::from_elems(y),
        Layout::contiguous(x.layout().shape().clone()),
        DType::F32,
    );
    (y, KvBuffers { k: kt, v: vt })
}

/// Whether the layer's call is a decoding step [`cpu::decoder_step`] runs: one sequence, one
/// token, every tensor contiguous f32 from its storage's start (the buffers `[1, kv_heads,
/// capacity, head_dim]`), every projection quantized without a bias.
fn is_step(
    x: &FlexTensor,
    w: &DecoderLayerWeights<Flex>,
    cache: &KvBuffers<Flex>,
    (cos, sin): (&FlexTensor, &FlexTensor),
    c: DecoderLayerConfig,
) -> bool {
    let one_token = matches!(x.layout().shape().to_vec()[..], [1, 1, _]);
    let buffer = [
        1,
        c.n_kv_heads,
        cache.k.layout().shape().to_vec()[2],
        c.head_dim,
    ];
    let whole = |t: &FlexTensor, dims: Option<&[usize]>| {
        t.dtype() == DType::F32
            && dims.is_none_or(|dims| t.layout().shape().to_vec() == dims)
            && t.layout().contiguous_offsets().map(|(at, _)| at) == Some(0)
    };
    let quant = [&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down]
        .iter()
        .all(|l| matches!(l, LayerLinear::Quant { .. }));
    let norms = [&w.attn_norm, &w.q_norm, &w.k_norm, &w.post_attn_norm];
    let norms = norms.into_iter().chain([&w.ffn_norm, &w.post_ffn_norm]);
    one_token
        && quant
        && [x, cos, sin]
            .into_iter()
            .chain(norms)
            .all(|t| whole(t, None))
        && whole(&cache.k, Some(&buffer))
        && whole(&cache.v, Some(&buffer))
}

/// A contiguous f32 tensor's values.
fn f(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("checked: contiguous f32")
}

/// A quantized projection's weight and how it reads its input.
fn weight(l: &LayerLinear<Flex>) -> Projection<'_> {
    match l {
        LayerLinear::Quant {
            words: t,
            desc,
            activations,
        } => Projection {
            weight: Weight::new(words(t), *desc).unwrap_or_else(|e| panic!("{e}")),
            activations: *activations,
        },
        _ => unreachable!("checked: every projection quantized"),
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::{Flex, FlexTensor, Layout};
    use burn::tensor::{Bytes, DType};

    use crate::cpu::tests::Rng;
    use crate::ops::layer::{
        self, DecoderLayerConfig, DecoderLayerWeights, KvBuffers, LayerLinear,
    };
    use crate::ops::{Positions, rope_tables};
    use crate::quant::{Activations, GgmlType, PackedLayout, QuantWeightDesc, pack};

    fn floats(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape.into()),
            DType::F32,
        )
    }

    /// A random weight `[out, inp]` of type `t` read as `activations` say: random bytes, every
    /// f16 scale (and min) of a block a small positive normal value.
    fn weight(
        rng: &mut Rng,
        t: GgmlType,
        (out, inp): (usize, usize),
        activations: Activations,
    ) -> LayerLinear<Flex> {
        let desc = QuantWeightDesc::new(t, PackedLayout::Gguf, out, inp).expect("shape");
        let size = t.type_size().expect("block type") as usize;
        let halves: &[usize] = match t {
            GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[0],
        };
        let mut bytes: Vec<u8> = (0..desc.n_bytes()).map(|_| rng.next() as u8).collect();
        for block in bytes.chunks_exact_mut(size) {
            for &at in halves {
                let h = half::f16::from_f32(0.001 + 0.004 * rng.unit().abs());
                block[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
        let words = pack(&bytes, desc).expect("pack");
        let n = words.len();
        let words = FlexTensor::new(
            Bytes::from_elems(words),
            Layout::contiguous(vec![n].into()),
            DType::U32,
        );
        LayerLinear::Quant {
            words,
            desc,
            activations,
        }
    }

    /// The decoding step's fused layer gives the op-by-op layer's output and key/value buffers
    /// bit for bit: global and sliding-window attention, grouped query heads, a cache already
    /// holding earlier positions, every projection of another format (Q6_K and the other
    /// formats' decoders), float and int8 activations (every projection, or some: an input
    /// rounded for readers of one or several run shapes, or for one reader among float ones).
    #[test]
    fn fused_step_is_the_op_by_op_layer() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let mut rng = Rng(seed);
        let (d, nh, nkv, hd, d_ff, cap) = (256, 4, 2, 64, 512, 37);
        let (f, i) = (Activations::Float, Activations::Int8);
        for (position, window, acts) in [
            (0, None, [f; 7]),
            (20, None, [i; 7]),
            (29, Some(8), [i, f, i, f, f, i, i]),
            (36, Some(64), [f, i, f, i, i, f, f]),
        ] {
            let [aq, ak, av, ao, ag, au, ad] = acts;
            let what = format!("seed {seed}, position {position}, window {window:?}, {acts:?}");
            let config = DecoderLayerConfig {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                eps: 1e-6,
                window,
                scale: 1.0 / (hd as f64).sqrt(),
            };
            let mut norm =
                |n: usize| floats((0..n).map(|_| 1.0 + 0.2 * rng.unit()).collect(), vec![n]);
            let (attn_norm, q_norm, k_norm) = (norm(d), norm(hd), norm(hd));
            let (post_attn_norm, ffn_norm, post_ffn_norm) = (norm(d), norm(d), norm(d));
            let w = DecoderLayerWeights::<Flex> {
                attn_norm,
                q: weight(&mut rng, GgmlType::Q8_0, (nh * hd, d), aq),
                k: weight(&mut rng, GgmlType::Q4_K, (nkv * hd, d), ak),
                v: weight(&mut rng, GgmlType::Q5_0, (nkv * hd, d), av),
                o: weight(&mut rng, GgmlType::Q6_K, (d, nh * hd), ao),
                q_norm,
                k_norm,
                post_attn_norm,
                ffn_norm,
                gate: weight(&mut rng, GgmlType::Q4_0, (d_ff, d), ag),
                up: weight(&mut rng, GgmlType::Q5_K, (d_ff, d), au),
                down: weight(&mut rng, GgmlType::Q6_K, (d, d_ff), ad),
                post_ffn_norm,
            };
            let (cos, sin) = rope_tables(cap, hd, 10_000.0, 1.0);
            let (cos, sin) = (
                floats(cos, vec![cap, hd / 2]),
                floats(sin, vec![cap, hd / 2]),
            );
            let mut buffer = || {
                let n = nkv * cap * hd;
                floats((0..n).map(|_| rng.unit()).collect(), vec![1, nkv, cap, hd])
            };
            let cache = KvBuffers::<Flex> {
                k: buffer(),
                v: buffer(),
            };
            let x = floats((0..d).map(|_| 2.0 * rng.unit()).collect(), vec![1, 1, d]);
            let at = || Positions::Host { start: position };
            assert!(
                super::is_step(&x, &w, &cache, (&cos, &sin), config),
                "{what}"
            );
            // the op-by-op layer first, on copies (the buffers it writes are then shared: the
            // fused step must copy them before writing, as the ops do)
            let (want, want_cache) = layer::forward::<Flex>(
                x.clone(),
                w.clone(),
                cache.clone(),
                cos.clone(),
                sin.clone(),
                at(),
                config,
            );
            let (got, got_cache) =
                super::decoder_layer(x, w, cache.clone(), cos, sin, at(), config);
            let bits = |t: &FlexTensor| -> Vec<u32> {
                let c = t.to_contiguous();
                c.as_slice::<f32>()
                    .expect("f32")
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(got.layout().shape().to_vec(), vec![1, 1, d], "{what}");
            assert_eq!(bits(&got), bits(&want), "{what}: output");
            assert_eq!(bits(&got_cache.k), bits(&want_cache.k), "{what}: keys");
            assert_eq!(bits(&got_cache.v), bits(&want_cache.v), "{what}: values");
            assert!(
                bits(&got).iter().all(|&b| f32::from_bits(b).is_finite()),
                "{what}"
            );
            // the caller's buffers are as they were
            assert_ne!(
                bits(&cache.k),
                bits(&got_cache.k),
                "{what}: the new key is written"
            );
        }
    }
}

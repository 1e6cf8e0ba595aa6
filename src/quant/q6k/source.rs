//! The Q6_K blocks of a packed weight read in place, whatever its layout: the view the CPU
//! products decode from, with no copy of the weight.

use super::BlockQ6K;
use super::planes::PlanesView;
use crate::quant::dequant::f16_at;
use crate::quant::{PackError, PackedLayout, QuantWeightDesc};

/// The blocks of a packed Q6_K weight, read in place.
#[derive(Clone, Copy, Debug)]
pub enum BlockSource<'a> {
    /// GGUF order.
    Gguf(&'a [BlockQ6K]),
    /// Aligned planes.
    Planes(PlanesView<'a>),
}

impl<'a> BlockSource<'a> {
    /// Views `words` as the blocks of the Q6_K weight `desc` (GGUF layout or planes), or says why
    /// it cannot.
    pub fn new(words: &'a [u32], desc: QuantWeightDesc) -> Result<Self, PackError> {
        desc.check_words(words)?;
        Ok(match desc.layout {
            PackedLayout::Gguf => {
                let bytes: &[u8] = bytemuck::cast_slice(words);
                BlockSource::Gguf(
                    BlockQ6K::slice_from_bytes(&bytes[..desc.n_bytes()])
                        .expect("the length was checked"),
                )
            }
            PackedLayout::Q6kPlanes => BlockSource::Planes(PlanesView::new(
                words,
                desc.blocks(),
                desc.out_features,
                desc.in_features,
            )?),
            PackedLayout::Interleaved => {
                return Err(PackError::CpuLayout {
                    ggml_type: desc.ggml_type,
                    layout: desc.layout,
                });
            }
        })
    }

    /// `ql`, `qh`, scales and `d` of block `i`, as the fixed-size parts every decoder takes.
    #[inline(always)]
    pub fn parts(&self, i: usize) -> (&'a [u8; 128], &'a [u8; 64], &'a [u8; 16], f32) {
        match self {
            BlockSource::Gguf(b) => {
                let b = &b[i];
                (&b.ql, &b.qh, bytemuck::cast_ref(&b.scales), f16_at(&b.d, 0))
            }
            BlockSource::Planes(p) => (
                p.ql(i).try_into().expect("128 ql bytes"),
                p.qh(i).try_into().expect("64 qh bytes"),
                p.scales(i).try_into().expect("16 scale bytes"),
                f16_at(&p.d(i), 0),
            ),
        }
    }

    /// Block `i` dequantized into `out`, exactly as ggml does.
    #[inline(always)]
    pub fn dequantize_block(&self, i: usize, out: &mut [f32; super::QK_K]) {
        let (ql, qh, sc, d) = self.parts(i);
        super::dequantize_parts(ql, qh, sc, d, out);
    }
}

#!/usr/bin/env python3
"""Independent references for burn-gguf's tests, run fresh at test time (gguf-py, libgguf, numpy).

    python3 oracle.py q6k-quantize IN.f32 K OUT.bin      # libgguf (= ggml quantize_row_q6_K_ref)
    python3 oracle.py dequantize TYPE IN.bin N OUT.f32   # gguf-py numpy dequantizer
    python3 oracle.py write-random OUT.gguf SEED         # a random GGUF written by gguf-py
    python3 oracle.py describe FILE                      # gguf-py's view of a file, as JSON
    python3 oracle.py dequantize-tensor FILE NAME OUT    # one tensor, gguf-py, raw f32
    python3 oracle.py digests FILE                       # per-tensor digest of gguf-py's f32

The digest of an f32 array is sum_i bits[i] * (2*i + 1) mod 2**64 over the little-endian u32
bit patterns (any single changed bit changes it); the Rust tests compute the same.
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V


def digest(a):
    bits = np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    weights = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * weights, dtype=np.uint64))


def dequantize(data, qtype):
    if qtype == T.Q8_K:
        blocks = data.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view(np.float32)
        return (d * blocks[:, 4:260].view(np.int8).astype(np.float32)).reshape(-1)
    return gguf.quants.dequantize(data, qtype).reshape(-1)


def value_json(field):
    """A metadata field as {"type": ..., "value": ...} with floats as bit patterns."""
    vtype = field.types[0]
    names = {V.UINT8: "u8", V.INT8: "i8", V.UINT16: "u16", V.INT16: "i16", V.UINT32: "u32",
             V.INT32: "i32", V.FLOAT32: "f32", V.BOOL: "bool", V.STRING: "string",
             V.UINT64: "u64", V.INT64: "i64", V.FLOAT64: "f64", V.ARRAY: "array"}

    def scalar(t, part):
        if t == V.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        v = part[0]
        if t == V.FLOAT32:
            return int(np.array([v], dtype=np.float32).view(np.uint32)[0])
        if t == V.FLOAT64:
            return int(np.array([v], dtype=np.float64).view(np.uint64)[0])
        if t == V.BOOL:
            return bool(v)
        return int(v)

    if vtype == V.ARRAY:
        et = field.types[1] if len(field.types) > 1 else V.UINT8
        elems = [scalar(et, field.parts[i]) for i in field.data]
        return {"type": "array", "element_type": names[et], "value": elems}
    return {"type": names[vtype], "value": scalar(vtype, field.parts[field.data[0]])}


def describe(path):
    r = gguf.GGUFReader(path)
    meta = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        meta[name] = value_json(field)
    tensors = [{"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                "offset": int(t.data_offset - r.data_offset), "n_bytes": int(t.n_bytes)}
               for t in r.tensors]
    return {"metadata": meta, "tensors": tensors}


def write_random(path, seed):
    rng = np.random.default_rng(seed)
    import libgguf
    w = gguf.GGUFWriter(path, arch="rand%d" % rng.integers(1000))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_uint32("rand.block_count", int(rng.integers(1, 100)))
    w.add_int32("rand.neg", int(rng.integers(-1000, 0)))
    w.add_uint64("rand.big", int(rng.integers(2**40, 2**62)))
    w.add_float32("rand.eps", float(rng.uniform(1e-7, 1e-5)))
    w.add_float64("rand.f64", float(rng.standard_normal()))
    w.add_bool("rand.flag", bool(rng.integers(2)))
    w.add_string("rand.name", "tensor-%x ✓" % rng.integers(1 << 30))
    w.add_key_value("rand.tokens", ["tok%d" % i for i in range(int(rng.integers(1, 40)))], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("rand.scores", [float(v) for v in rng.standard_normal(int(rng.integers(1, 30)))], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("rand.types", [int(v) for v in rng.integers(0, 6, int(rng.integers(1, 30)))], V.ARRAY, sub_type=V.INT32)
    kinds = ["f32", "f16", "bf16", "q8_0", "q4_0", "q5_1", "q6_k", "f32_1d", "f32_3d", "f32_odd"]
    for i, kind in enumerate(kinds):
        rows = int(rng.integers(1, 6))
        k = 256 * int(rng.integers(1, 4))
        x = (rng.standard_normal((rows, k)) * rng.uniform(0.01, 3)).astype(np.float32)
        name = "blk.%d.%s.weight" % (i, kind)
        if kind == "f32":
            w.add_tensor(name, x)
        elif kind == "f32_odd":          # ne0 not a multiple of 256: stays F32 under quantize
            w.add_tensor(name, x[:, :k - 3].copy())
        elif kind == "f32_1d":
            w.add_tensor(name, x[0].copy())
        elif kind == "f32_3d":
            w.add_tensor(name, x.reshape(rows, -1, 256).copy())
        elif kind == "f16":
            w.add_tensor(name, x.astype(np.float16))
        elif kind == "q6_k":
            q = libgguf.quantize_rows(x, libgguf.GGMLQuantizationType.Q6_K)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=T.Q6_K)
        else:
            qt = {"bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q5_1": T.Q5_1}[kind]
            q = gguf.quants.quantize(x, qt)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv):
    cmd = argv[1]
    if cmd == "q6k-quantize":
        import libgguf
        x = np.fromfile(argv[2], dtype="<f4").reshape(-1, int(argv[3]))
        libgguf.quantize_rows(x, libgguf.GGMLQuantizationType.Q6_K).tofile(argv[4])
    elif cmd == "dequantize":
        qtype = T[argv[2].upper()]
        data = np.fromfile(argv[3], dtype=np.uint8)
        y = dequantize(data, qtype)
        assert y.size == int(argv[4]), (y.size, argv[4])
        y.astype("<f4").tofile(argv[5])
    elif cmd == "write-random":
        write_random(argv[2], int(argv[3]))
    elif cmd == "describe":
        json.dump(describe(argv[2]), sys.stdout)
    elif cmd == "dequantize-tensor":
        r = gguf.GGUFReader(argv[2])
        t = next(t for t in r.tensors if t.name == argv[3])
        dequantize(t.data, t.tensor_type).astype("<f4").tofile(argv[4])
    elif cmd == "digests":
        r = gguf.GGUFReader(argv[2])
        for t in r.tensors:
            print(t.name, digest(dequantize(t.data, t.tensor_type)))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)

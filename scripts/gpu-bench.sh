#!/usr/bin/env bash
# Runs examples/bench.rs on the GPU machine (CUDA, then wgpu/Vulkan) with the binary that
# scripts/gpu-build.sh put in .gpu/; CSVs go to $OUT. Usage there: bash scripts/gpu-bench.sh [ARGS]
set -uo pipefail
source scripts/gpu-env.sh
gzip -dc .gpu/bench.gz > /tmp/bench && chmod +x /tmp/bench
for rt in cuda wgpu; do
    echo "=== $rt"
    /tmp/bench --backend "$rt" --csv "$OUT/bench-$rt.csv" "$@" 2>&1 | tee "$OUT/bench-$rt.log" \
        | grep -E "copy bandwidth|stream|error|panicked"
done

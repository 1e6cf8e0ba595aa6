#!/usr/bin/env bash
# One GPU-machine call for kernel work: the kernel tests on CUDA and wgpu/Vulkan, the generated
# CUDA source of the planes kernel, a tuning sweep, and kernel times from Nsight Compute. Build first, here: bash scripts/gpu-build.sh (needs .gpu/q6k_matmul.gz and
# .gpu/bench.gz); then on the GPU machine, carry [.gpu, .gl]: bash scripts/gpu-perf.sh [STEPS]
# STEPS: any of test src sweep ncu bench (default: all but bench). The bench step takes up to
# 6–7 minutes per runtime on an H100 (session 5: CUDA 425 s, wgpu 354 s): run it as RUNTIMES=cuda and
# RUNTIMES=wgpu in separate device calls.
set -uo pipefail
source scripts/gpu-env.sh
steps=${*:-test src sweep ncu}
gzip -dc .gpu/q6k_matmul.gz > /tmp/q6k_matmul && chmod +x /tmp/q6k_matmul
gzip -dc .gpu/bench.gz > /tmp/bench && chmod +x /tmp/bench
[ -f .gpu/gemma-ffn-down.gguf ] && export BURN_GGUF_GEMMA=$PWD/.gpu/gemma-ffn-down.gguf BURN_GGUF_REQUIRE_GEMMA=1
has() { [[ " $steps " == *" $1 "* ]]; }
t0=$(date +%s)
el() { echo "--- [$(( $(date +%s) - t0 ))s] $*"; }

if has test; then
    el "kernel tests: CUDA (fused + dequantize kernels called directly, the op, f16, records) and wgpu/Vulkan"
    BURN_GGUF_CUDA=1 BURN_GGUF_REQUIRE_WGPU=1 timeout 240 /tmp/q6k_matmul --test-threads=1 --nocapture \
        cuda::matmul_cuda wgpu::matmul_wgpu 2>&1 | tee "$OUT/test.log" | grep -E "^test |test result|panicked|wgpu device" | head -20
fi
if has src; then
    el "generated CUDA source of the kernels (CUBECL_DEBUG_LOG)"
    CUBECL_DEBUG_LOG="$OUT/cubecl.log" timeout 120 /tmp/bench --backend cuda --shapes 4096x14336 --m 1,8 \
        --iters 3 --no-baselines --l2-mb 0 > /dev/null 2>&1
    grep -c "q6k_gemv_planes" "$OUT/cubecl.log" || true
    gzip -9f "$OUT/cubecl.log"
fi
if has sweep; then
    el "sweep: rows x warps per cube, 4096x14336, CUDA"
    timeout 200 /tmp/bench --backend cuda --shapes 4096x14336 --m 1,2,4,8 --iters 30 --no-baselines \
        --layouts planes,gguf --no-fusion --sweep ${SWEEP:-2x2,2x4,4x1,4x2,4x4,4x2x2,8x1,8x2} \
        --csv "$OUT/sweep-cuda.csv" 2>&1 \
        | grep -E "copy bandwidth| stream " | tee "$OUT/sweep-cuda.log"
fi
if has ncu; then
    # Nsight Compute: the kernel's device time (real clocks, caches flushed before each kernel,
    # like the rotating weights), registers, occupancy and DRAM throughput, per launch geometry.
    shapes=${NCU_SHAPES:-4096x14336}
    sweep=${NCU_SWEEP-2x4,4x2,4x4,8x2}
    el "ncu: $shapes, M=${NCU_M:-1,8}, default geometry${sweep:+ then $sweep}"
    timeout 250 ncu --clock-control none --cache-control all -k regex:q6k_gemv --csv \
        --metrics gpu__time_duration.sum,launch__registers_per_thread,launch__grid_size,launch__block_size,sm__warps_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.avg.per_cycle_active,sm__inst_executed.sum \
        /tmp/bench --backend cuda --shapes "$shapes" --m ${NCU_M:-1,8} --iters 1 --no-baselines --no-kernel-times \
        --layouts ${NCU_LAYOUTS:-planes,gguf} --l2-mb 0 --warm-up-ms 0 ${sweep:+--sweep "$sweep"} > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    python3 - "$OUT/ncu.csv" "$shapes" "${NCU_M:-1,8}" "${NCU_LAYOUTS:-planes,gguf}" "$sweep" <<'PY' || tail -5 "$OUT/ncu.err"
import csv, sys, collections, statistics
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, body = rows[0], rows[1:]
i = {k: head.index(k) for k in ("ID", "Kernel Name", "Metric Name", "Metric Value")}
launches = collections.OrderedDict()
for r in body:
    launches.setdefault(r[i["ID"]], {})[r[i["Metric Name"]]] = r[i["Metric Value"]].replace(",", "")
launches = list(launches.values())
# The benchmark launches each variant 11 times with --iters 1 (5 warm-up, 1 call, 5 stream).
labels = [(s, m, v) for s in sys.argv[2].split(",") for m in sys.argv[3].split(",")
          for v in sys.argv[4].split(",") + [x for x in sys.argv[5].split(",") if x]]
print(f"{len(launches)} launches profiled, {len(labels)} variants")
for n, (s, m, v) in enumerate(labels):
    chunk = launches[11 * n: 11 * n + 11]
    if not chunk:
        break
    t = statistics.median(float(c["gpu__time_duration.sum"]) for c in chunk) / 1000
    c = chunk[-1]
    print(f'{s:>11} M={m:<2} {v:<8} kernel {t:8.1f} us  regs {c["launch__registers_per_thread"]:>4} '
          f'grid {c["launch__grid_size"]:>7} block {c["launch__block_size"]:>4} dram {float(c["dram__throughput.avg.pct_of_peak_sustained_elapsed"]):5.1f}% '
          f'warps {float(c["sm__warps_active.avg.pct_of_peak_sustained_active"]):5.1f}% ipc {c["smsp__inst_executed.avg.per_cycle_active"]} inst {c["sm__inst_executed.sum"]}')
PY
fi
if has bench; then
    el "full benchmark, CUDA then wgpu/Vulkan"
    for rt in ${RUNTIMES:-cuda wgpu}; do
        timeout 590 /tmp/bench --backend "$rt" ${ITERS:+--iters $ITERS} --layouts planes,gguf --no-fusion \
            --csv "$OUT/bench-$rt.csv" --plot "$OUT/bench-$rt.png" 2>&1 \
            | tee "$OUT/bench-$rt.log" | grep -E "copy bandwidth| stream |skipped|error|panicked"
    done
fi
el "done"

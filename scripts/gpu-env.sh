# Sourced by the scripts that run on the GPU machine: the Vulkan/GL loaders carried in .gl/, the
# NVIDIA ICD, CUDA's path, an $OUT folder, and the card's name in $OUT/gpu.txt.
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
export PATH=$CUDA_PATH/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$OUT/gpu.txt"

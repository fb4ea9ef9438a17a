#!/bin/sh
# Regenerates corpus/ from the Go distribution on PATH: one file per package
# of packages.txt, the output of `go doc -all`, at corpus/<import path>.txt.
# The document id of a file is its import path.
set -eu
cd "$(dirname "$0")"
rm -rf corpus
while read -r pkg; do
	mkdir -p "corpus/$(dirname "$pkg")"
	go doc -all "$pkg" >"corpus/$pkg.txt"
done <packages.txt
go version >corpus.version

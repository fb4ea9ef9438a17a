#!/usr/bin/env bash
# Runs the whole test suite: unit tests, real-Qdrant sink tests and the end-to-end
# tests, with the race detector. The tests install the Qdrant 1.16.3 binary
# themselves (scripts/install-qdrant.sh, cached); NATS runs embedded.
# Test packages run one at a time (-p 1): several of them start servers, and
# they must not compete for this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
exec go test -race -p 1 -timeout 30m -count 1 ./... "$@"

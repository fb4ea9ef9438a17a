package reindex_test

import (
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/reindex"
)

// The parts a worker gives a Runner implement its interfaces.
var (
	_ reindex.Registry  = (*generation.Registry)(nil)
	_ reindex.Stage     = (*ingest.Stage)(nil)
	_ reindex.TenantKey = (*keyring.TenantKey)(nil)
)

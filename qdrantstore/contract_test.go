package qdrantstore_test

import (
	"testing"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// TestContractQdrant runs the contract suite against a real Qdrant node,
// reading points back with the Qdrant client's scroll: the embedded store's
// semantics are checked against the real thing.
func TestContractQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	// Small requests, several at once: the contract's many-document calls
	// then also exercise the packing of writes into parallel requests.
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newSink(t, node, func(c *qdrantstore.Config) {
			c.BatchPoints, c.Parallelism, c.WriteOrdering = 10, 4, qdrantstore.OrderingStrong
		})
	})
}

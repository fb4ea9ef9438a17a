package lww_test

import (
	"context"
	"fmt"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The in-memory register and store of these examples are in protocol_test.go.

func ExampleClaims_Settle() {
	ctx := context.Background()
	versions, store := newMemVersions(), newMemStore()
	p, _ := lww.New(lww.Config{Versions: versions, Pruner: store})

	// Version 1 of a document with three chunks is claimed; before it is
	// written, version 2 with one chunk is claimed and stored.
	older := p.Claim(ctx, "c", []pipeline.DocVersion{doc("d", 1)})
	newer := p.Claim(ctx, "c", []pipeline.DocVersion{doc("d", 2)})
	store.upsert("d", 1, 2)
	store.remove("d", 2)
	newer.Settle(ctx, newer.Held())

	// Version 1 writes late: its conditional upsert leaves chunk 0 alone
	// but inserts chunks 1 and 2, which version 2 does not have.
	store.upsert("d", 3, 1)
	store.remove("d", 1)
	fmt.Println("after the late write:", len(store.points), "points")

	// Its re-read finds version 2 and prunes below it.
	errs := older.Settle(ctx, older.Held())
	fmt.Println("settled:", errs[0], store.pruned)
	fmt.Println("stored:", store.points)
	// Output:
	// after the late write: 3 points
	// settled: <nil> [[{u d 2}]]
	// stored: map[{d 0}:2]
}

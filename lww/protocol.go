package lww

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Pruner is the part of a store the protocol calls itself. The store's Apply,
// which the writer calls between Claim and Settle, follows the rule of the
// package doc too.
type Pruner interface {
	// Prune deletes, for each document, its points whose version is <
	// d.Version. It returns once that is durable; a *pipeline.BatchError says
	// which documents failed.
	Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error
}

// Config configures a Protocol. Versions and Pruner are required.
type Config struct {
	Versions Versions
	Pruner   Pruner
	// Parallelism bounds the register claims of one Claim call under way at
	// once, default 64: the unanswered requests of a register with
	// ClaimMany, the concurrent Claim calls of another.
	Parallelism int
}

// Protocol is a writer's side of last-version-wins (see the package doc): it
// claims versions before the writes and settles them after. It is safe for
// concurrent use.
type Protocol struct {
	cfg Config
}

// New validates cfg and returns a Protocol.
func New(cfg Config) (*Protocol, error) {
	if cfg.Versions == nil || cfg.Pruner == nil {
		return nil, errors.New("lww: the protocol needs a version register and a pruner")
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 64
	}
	return &Protocol{cfg: cfg}, nil
}

// Claims is the outcome of Protocol.Claim for one batch of one collection,
// until Settle. It is not safe for concurrent use.
type Claims struct {
	p          *Protocol
	collection string
	docs       []pipeline.DocVersion
	keys       []string       // by index in docs: the register key, where claimed
	held       []int          // indexes in docs to write, ascending
	first      []bool         // by index in docs: new to the register
	errs       []error        // by index in docs: a failed claim, re-read or prune
	below      map[int]uint64 // by index in docs: prune the document below this version
}

// Claim claims, in the register, the version of each document of docs, all
// of collection. Of several versions of one document in docs only the
// highest is claimed; the others are superseded and succeed as they are. A
// version superseded in the register is pruned by Settle below the newer
// version. It blocks until every claim is answered.
func (p *Protocol) Claim(ctx context.Context, collection string, docs []pipeline.DocVersion) *Claims {
	c := &Claims{p: p, collection: collection, docs: docs, first: make([]bool, len(docs)),
		errs: make([]error, len(docs)), below: make(map[int]uint64)}
	idx := newestPerDocument(docs)
	c.keys = make([]string, len(docs))
	keys, versions := make([]string, len(idx)), make([]uint64, len(idx))
	for j, i := range idx {
		c.keys[i] = Key(collection, docs[i].UserID, docs[i].DocID)
		keys[j], versions[j] = c.keys[i], docs[i].Version
	}
	claims, errs := p.claimMany(ctx, keys, versions)
	for j, i := range idx {
		if errs[j] != nil {
			c.errs[i] = fmt.Errorf("claim version %d of %q: %w", docs[i].Version, docs[i].DocID, errs[j])
			continue
		}
		if claims[j].Held {
			c.held = append(c.held, i)
			c.first[i] = claims[j].First
			continue
		}
		// An earlier, interrupted attempt of this version may have written
		// after the newer version's own cleanup.
		c.below[i] = claims[j].Latest
	}
	return c
}

// claimMany claims versions[j] for keys[j] in the register, Parallelism
// claims under way at once: with one ClaimMany when the register has it,
// else with one Claim each, from as many goroutines.
func (p *Protocol) claimMany(ctx context.Context, keys []string, versions []uint64) ([]Claimed, []error) {
	if b, ok := p.cfg.Versions.(BatchVersions); ok {
		return b.ClaimMany(ctx, keys, versions, p.cfg.Parallelism)
	}
	claims, errs := make([]Claimed, len(keys)), make([]error, len(keys))
	var g errgroup.Group
	g.SetLimit(p.cfg.Parallelism)
	for j, key := range keys {
		g.Go(func() error {
			claims[j], errs[j] = p.cfg.Versions.Claim(ctx, key, versions[j])
			return nil
		})
	}
	_ = g.Wait()
	return claims, errs
}

// newestPerDocument returns the indexes in docs of the highest version of
// each document, in order.
func newestPerDocument(docs []pipeline.DocVersion) []int {
	type doc struct{ user, id string }
	newest := make(map[doc]int, len(docs))
	for i, d := range docs {
		if j, ok := newest[doc{d.UserID, d.DocID}]; !ok || d.Version > docs[j].Version {
			newest[doc{d.UserID, d.DocID}] = i
		}
	}
	var kept []int
	for i, d := range docs {
		if newest[doc{d.UserID, d.DocID}] == i {
			kept = append(kept, i)
		}
	}
	return kept
}

// Held returns the indexes in docs, ascending, of the documents whose version
// is the newest claimed: the caller writes those (the store's Apply) before
// Settle.
func (c *Claims) Held() []int { return c.held }

// First reports whether docs[i] was new to the register: its points, if any,
// predate the register (copied by ragpipe migrate, for instance).
func (c *Claims) First(i int) bool { return c.first[i] }

// Settle finishes the batch once the writes are done: written holds the
// indexes in docs, ascending, of the held documents whose write left points
// (an upsert that succeeded). It re-reads the register for them and prunes
// every document superseded, at claim or meanwhile, below the newer version.
// It returns one error per document of docs: that of its claim, re-read or
// prune, nil otherwise; a document with an error must be retried. Settle must
// be called even when the writes failed, and once. It blocks until done.
func (c *Claims) Settle(ctx context.Context, written []int) []error {
	c.overtaken(ctx, written)
	c.prune(ctx)
	return c.errs
}

// overtaken re-reads the register for the documents at written, in one
// batched read, and marks for pruning those whose newest version moved past
// the written one.
func (c *Claims) overtaken(ctx context.Context, written []int) {
	if len(written) == 0 {
		return
	}
	keys := make([]string, len(written))
	for j, i := range written {
		if keys[j] = c.keys[i]; keys[j] == "" { // not claimed: no held document
			keys[j] = Key(c.collection, c.docs[i].UserID, c.docs[i].DocID)
		}
	}
	latest, err := c.p.cfg.Versions.Latest(ctx, keys)
	for j, i := range written {
		switch {
		case err != nil:
			c.errs[i] = fmt.Errorf("read version of %q: %w", c.docs[i].DocID, err)
		case latest[j] > c.docs[i].Version:
			c.below[i] = latest[j]
		}
	}
}

// prune deletes, in one call, the points of every marked document below its
// newer version; a document whose prune fails fails too.
func (c *Claims) prune(ctx context.Context) {
	if len(c.below) == 0 {
		return
	}
	var order []int
	for i := range c.docs {
		if _, ok := c.below[i]; ok {
			order = append(order, i)
		}
	}
	docs := make([]pipeline.DocVersion, len(order))
	for j, i := range order {
		docs[j] = pipeline.DocVersion{UserID: c.docs[i].UserID, DocID: c.docs[i].DocID, Version: c.below[i]}
	}
	for j, err := range pipeline.ItemErrors(c.p.cfg.Pruner.Prune(ctx, c.collection, docs), len(docs)) {
		if err != nil {
			c.errs[order[j]] = fmt.Errorf("prune versions older than %d: %w", docs[j].Version, err)
		}
	}
}

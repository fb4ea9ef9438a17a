package ingest

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/pipeline"
)

// keyParallelism bounds the concurrent key look-ups of one batch: a tenant
// seen for the first time costs a round trip to the key bucket.
const keyParallelism = 16

// tenantKeySet is the keys of a batch's tenants (tenantKeys).
type tenantKeySet struct {
	keys map[string]TenantKey
	errs map[string]error
}

// tenantKeys returns the key of every tenant of the upserts at idx, and the
// error of each tenant whose key could not be had; both nil without
// StageConfig.Keys. A key that is misconfigured (pipeline.IsMisconfigured)
// is reported like a misconfigured embedder: logged once, on /readyz. A tenant's key is cached by the keyring, so a batch of
// known tenants does not block.
func (s *Stage) tenantKeys(ctx context.Context, events []pipeline.Event, idx []int) tenantKeySet {
	if s.cfg.Keys == nil {
		return tenantKeySet{}
	}
	var tenants []string
	slot := make(map[string]int)
	for _, i := range idx {
		if u := events[i].UserID; events[i].Op == pipeline.OpUpsert {
			if _, ok := slot[u]; !ok {
				slot[u] = len(tenants)
				tenants = append(tenants, u)
			}
		}
	}
	got := make([]TenantKey, len(tenants))
	errs := make([]error, len(tenants))
	var g errgroup.Group
	g.SetLimit(keyParallelism)
	for n, u := range tenants {
		g.Go(func() error {
			got[n], errs[n] = s.cfg.Keys(ctx, u)
			if errs[n] == nil && got[n] == nil {
				errs[n] = fmt.Errorf("no key for tenant %s", u)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report in errs
	keys := make(map[string]TenantKey, len(tenants))
	var failed map[string]error
	for n, u := range tenants {
		if errs[n] == nil || pipeline.IsMisconfigured(errs[n]) {
			s.health(keyOf(u), errs[n])
		}
		if errs[n] != nil {
			if failed == nil {
				failed = make(map[string]error)
			}
			failed[u] = fmt.Errorf("encryption key of tenant %s: %w", u, errs[n])
			continue
		}
		keys[u] = got[n]
	}
	return tenantKeySet{keys, failed}
}

// seal replaces the text of every point of w, embedded already, by its
// stored form under key: ciphertext bound to the point (the collection's
// ragpipe name, tenant, document and chunk index).
func seal(key TenantKey, collection string, w *pipeline.DocWrite) {
	for k := range w.Points {
		p := &w.Points[k]
		p.Text = key.Seal(collection, p.DocID, p.ChunkIndex, p.Text)
	}
}

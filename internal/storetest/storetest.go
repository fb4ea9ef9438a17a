// Package storetest is the contract suite every vector store passes: the
// Qdrant store against a real Qdrant node and the embedded store of
// ragpipe dev, so that both keep the same semantics.
package storetest

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Store is what the contract suite needs of a vector store: what ingest
// writes through (ingest.Sink, ingest.VectorSource), what the search service
// reads (Search, List, StatusReader), MaxVersion (lww.StoredVersions), and
// Scroll to read every stored point back.
type Store interface {
	ingest.Sink
	ingest.VectorSource
	StatusReader
	MaxVersion(ctx context.Context, collection string) (uint64, error)
	Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error)
	List(ctx context.Context, collection, userID string, limit int, cursor string) (docs []pipeline.Doc, next string, err error)
	Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error)
	EraseTenant(ctx context.Context, collection, userID string) (int, error)                                  // ragpipe forget
	DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error) // ragpipe backup
}

// Dims is the dimensions of the collections the suite creates.
const Dims = 4

// Run runs the semantic tests every vector store must pass, the Qdrant
// store's and the embedded store's alike, one subtest each. open returns a
// store for one subtest; subtests use distinct collection names, so stores
// may share a server.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) { st.run(t, open(t)) })
	}
}

// subtests are Run's, in order.
var subtests = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"EnsureCollection", testEnsureCollection},
	{"UnknownCollection", testUnknownCollection},
	{"ApplyExactPayload", testApplyExactPayload},
	{"ConditionalUpsert", testConditionalUpsert},
	{"ShrinkGrowDelete", testShrinkGrowDelete},
	{"TenantsAndDocsAreSeparate", testTenantsAndDocsAreSeparate},
	{"ManyDocsInOneCall", testManyDocsInOneCall},
	{"MixedVersionsInOneRequest", testMixedVersionsInOneRequest},
	{"PermanentErrors", testPermanentErrors},
	{"SearchTenantIsolation", testSearchTenantIsolation},
	{"SearchFilters", testSearchFilters},
	{"SearchThresholdEquality", testSearchThresholdEquality},
	{"SearchThresholdTopKOrder", testSearchThresholdTopKOrder},
	{"SearchDistances", testSearchDistances},
	{"ListPages", testListPages},
	{"Status", testStatus},
	{"MaxVersion", testMaxVersion},
	{"SearchErrors", testSearchErrors},
	{"KeywordSearch", testKeywordSearch},
	{"HybridSearch", testHybridSearch},
	{"ModesTenantIsolation", testModesTenantIsolation},
	{"ModesFilterThreshold", testModesFilterThreshold},
	{"NoKeywords", testNoKeywords},
	{"StoredVectors", testStoredVectors},
	{"Scroll", testScroll},
	{"DocumentPoints", testDocumentPoints},
	{"EraseTenant", testEraseTenant},
	{"GenerationNaming", testGenerationNaming},
	{"SwitchAlias", testSwitchAlias},
	{"NameTaken", testNameTaken},
	{"DropCollection", testDropCollection},
	{"EraseTenantGenerations", testEraseTenantGenerations},
}

// Ensure creates collection name with Dims dimensions and distance d, or
// fails the test.
func Ensure(t *testing.T, s Store, name string, d pipeline.Distance) {
	t.Helper()
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: name, Dims: Dims, Distance: d}, true); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
}

// Apply applies ws to coll, or fails the test.
func Apply(t *testing.T, s Store, coll string, ws ...pipeline.DocWrite) {
	t.Helper()
	if err := s.Apply(t.Context(), coll, ws); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// prune prunes ds in coll, or fails the test.
func prune(t *testing.T, s Store, coll string, ds ...pipeline.DocVersion) {
	t.Helper()
	if err := s.Prune(t.Context(), coll, ds); err != nil {
		t.Fatalf("Prune: %v", err)
	}
}

// Points reads every point of coll with Scroll, in small pages, checking
// that ids come in order and once each.
func Points(t testing.TB, s Store, coll string) []pipeline.Point {
	t.Helper()
	var all []pipeline.Point
	after := ""
	for page := 0; ; page++ {
		pts, next, err := s.Scroll(t.Context(), coll, after, 7)
		if err != nil {
			t.Fatalf("Scroll(%q): %v", after, err)
		}
		for _, p := range pts {
			if len(all) > 0 && all[len(all)-1].ID >= p.ID {
				t.Fatalf("Scroll: id %s after %s", p.ID, all[len(all)-1].ID)
			}
			all = append(all, p)
		}
		if next == "" {
			return all
		}
		if len(pts) == 0 || page > 100000 {
			t.Fatalf("Scroll: next %q after an empty page", next)
		}
		after = next
	}
}

// Doc returns a document's points, by chunk index.
func Doc(t *testing.T, s Store, coll, user, doc string) []pipeline.Point {
	t.Helper()
	var out []pipeline.Point
	for _, p := range Points(t, s, coll) {
		if p.UserID == user && p.DocID == doc {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChunkIndex < out[j].ChunkIndex })
	return out
}

// ExpectDoc checks that exactly the n chunks of version v are stored.
func ExpectDoc(t *testing.T, s Store, coll, user, doc string, v uint64, n int) {
	t.Helper()
	got := Doc(t, s, coll, user, doc)
	var desc []string
	for _, p := range got {
		desc = append(desc, fmt.Sprintf("%d:v%d/%d", p.ChunkIndex, p.Version, p.ChunkCount))
	}
	ok := len(got) == n
	for i, p := range got {
		if !ok {
			break
		}
		ok = p.ChunkIndex == i && p.Version == v && p.ChunkCount == n &&
			p.Text == fmt.Sprintf("%s v%d chunk %d", doc, v, i) && p.ID == pipeline.PointID(user, doc, i)
	}
	if !ok {
		t.Fatalf("%s/%s: stored %v, want %d chunks of v%d", user, doc, desc, n, v)
	}
}

// payload is a point's payload as Qdrant stores it (CONTRACT §3, and
// text_hash when the point has one).
func payload(p pipeline.Point) map[string]any {
	pl := map[string]any{
		"user_id": p.UserID, "doc_id": p.DocID, "chunk_index": int64(p.ChunkIndex), "chunk_count": int64(p.ChunkCount),
		"text": p.Text, "metadata": p.Metadata, "version": int64(p.Version),
	}
	if p.TextHash != "" {
		pl["text_hash"] = p.TextHash
	}
	return pl
}

// hitIDs returns the hits' document ids, in order.
func hitIDs(hits []pipeline.Hit) []string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.DocID
	}
	return ids
}

// Search runs q on coll, or fails the test.
func Search(t *testing.T, s Store, coll string, q pipeline.Query) []pipeline.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), coll, q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return hits
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

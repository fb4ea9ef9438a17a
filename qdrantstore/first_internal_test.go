package qdrantstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestFirstVersionRace provokes the race insert-only upserts of first
// versions rely on: v1, a first version, reads that its document has
// nothing stored; a newer version v2 is written before v1's upsert; v1's
// upsert must leave v2's points alone and insert only v1's extra chunk. The
// same request without update_filter (a plain upsert) overwrites v2's
// points, which the check must catch.
func TestFirstVersionRace(t *testing.T) {
	s, err := New(t.Context(), Config{Host: "127.0.0.1", Port: qdranttest.Start(t).GRPCPort()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name     string
		filtered bool
		wantOK   bool
	}{{"insert-only", true, true}, {"plain upsert", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			coll := fmt.Sprintf("first_%v", tc.filtered)
			c := pipeline.Collection{Name: coll, Dims: 8, Distance: pipeline.Cosine}
			if err := s.EnsureCollection(t.Context(), c, true); err != nil {
				t.Fatal(err)
			}
			v1, v2 := testWrite("u", "d", 1, 3, nil), testWrite("u", "d", 2, 2, nil)
			v1.First = true
			units := costUnits(t, s, []pipeline.DocWrite{v1}, c)
			nothing := s.nothingStored(t.Context(), coll, units)
			if !nothing {
				t.Fatal("the read found points of a new document")
			}
			// v2, claimed after v1, writes before v1's upsert.
			if err := s.Apply(t.Context(), coll, []pipeline.DocWrite{v2}); err != nil {
				t.Fatal(err)
			}
			var b []byte
			if tc.filtered {
				b, _ = encodeRequest(nil, coll, s.ordering, units, !nothing)
			} else {
				b, _ = encodeUpsert(nil, coll, s.ordering, units)
			}
			if err := sendRequest(t, s, coll, b); err != nil {
				t.Fatal(err)
			}
			err := checkVersions(t.Context(), s, coll, map[string]int64{
				pipeline.PointID("u", "d", 0): 2, pipeline.PointID("u", "d", 1): 2, pipeline.PointID("u", "d", 2): 1,
			})
			if (err == nil) != tc.wantOK {
				t.Fatalf("stored versions: %v; want ok %v", err, tc.wantOK)
			}
		})
	}
}

// checkVersions reports whether collection holds exactly the points of
// want, each at its version.
func checkVersions(ctx context.Context, s *Store, collection string, want map[string]int64) error {
	points, err := s.client.Scroll(ctx, &qdrant.ScrollPoints{
		CollectionName: collection, Limit: qdrant.PtrOf(uint32(100)),
		WithPayload: qdrant.NewWithPayloadInclude(keyVersion), WithVectors: qdrant.NewWithVectors(false),
	})
	if err != nil {
		return err
	}
	if len(points) != len(want) {
		return fmt.Errorf("%d points, want %d", len(points), len(want))
	}
	for _, p := range points {
		id := p.GetId().GetUuid()
		if v, ok := want[id]; !ok || p.GetPayload()[keyVersion].GetIntegerValue() != v {
			return fmt.Errorf("point %s at version %d, want %d", id, p.GetPayload()[keyVersion].GetIntegerValue(), v)
		}
	}
	return nil
}

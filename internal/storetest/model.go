package storetest

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Vec is a deterministic, non-zero vector of a chunk.
func Vec(version uint64, chunk int) []float32 {
	return []float32{float32(version), float32(chunk + 1), 0.5, -1}
}

// Write builds a document write of version v with n chunks (a delete for n=0).
func Write(user, doc string, v uint64, n int) pipeline.DocWrite {
	w := pipeline.DocWrite{UserID: user, DocID: doc, Version: v}
	for i := range n {
		w.Points = append(w.Points, pipeline.Point{
			ID:         pipeline.PointID(user, doc, i),
			Vector:     Vec(v, i),
			UserID:     user,
			DocID:      doc,
			ChunkIndex: i,
			ChunkCount: n,
			Text:       fmt.Sprintf("%s v%d chunk %d", doc, v, i),
			Metadata:   map[string]any{"v": int64(v)},
			Version:    v,
		})
	}
	return w
}

// VecWrite is a one-chunk write with the given vector and metadata.
func VecWrite(user, doc string, v uint64, md map[string]any, vector ...float32) pipeline.DocWrite {
	return pipeline.DocWrite{UserID: user, DocID: doc, Version: v, Points: []pipeline.Point{{
		ID: pipeline.PointID(user, doc, 0), Vector: vector, UserID: user, DocID: doc,
		ChunkCount: 1, Text: doc, Metadata: md, Version: v,
	}}}
}

// DocKey names a document in a Model.
type DocKey struct{ User, Doc string }

// Model is the expected state: each document's newest write.
type Model map[DocKey]pipeline.DocWrite

// Apply records ws as their documents' newest writes.
func (m Model) Apply(ws ...pipeline.DocWrite) {
	for _, w := range ws {
		m[DocKey{w.UserID, w.DocID}] = w
	}
}

// Clone returns a copy of m.
func (m Model) Clone() Model {
	out := make(Model, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Diff says how the stored points got differ from m ("" when they do not).
// Metadata in m must be in stored form (int64, float64, []any). Keyword
// vectors are not compared: a store may compute those of points written
// without one.
func (m Model) Diff(got []pipeline.Point) string {
	want := map[string]pipeline.Point{}
	for _, w := range m {
		for _, p := range w.Points {
			p.UserID, p.DocID, p.Version = w.UserID, w.DocID, w.Version
			if p.Metadata == nil {
				p.Metadata = map[string]any{}
			}
			p.Keywords = nil
			want[p.ID] = p
		}
	}
	var problems []string
	for _, p := range got {
		p.Keywords = nil
		w, ok := want[p.ID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("unexpected %s/%s#%d v%d", p.UserID, p.DocID, p.ChunkIndex, p.Version))
		case !reflect.DeepEqual(p, w):
			problems = append(problems, fmt.Sprintf("%s/%s#%d: got v%d %+v, want v%d %+v", p.UserID, p.DocID, p.ChunkIndex, p.Version, p, w.Version, w))
		}
		delete(want, p.ID)
	}
	for _, p := range want {
		problems = append(problems, fmt.Sprintf("missing %s/%s#%d v%d", p.UserID, p.DocID, p.ChunkIndex, p.Version))
	}
	sort.Strings(problems)
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("… %d more", len(problems)-5))
	}
	return strings.Join(problems, "\n")
}

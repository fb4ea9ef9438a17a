package pipeline

import "testing"

func TestWholeVersion(t *testing.T) {
	pt := func(v uint64, i, n int) Point { return Point{Version: v, ChunkIndex: i, ChunkCount: n} }
	for _, c := range []struct {
		name string
		pts  []Point
		want uint64 // 0: nil
	}{
		{"newest whole", []Point{pt(3, 1, 2), pt(2, 0, 1), pt(3, 0, 2)}, 3},
		{"newest mid-write", []Point{pt(3, 0, 2), pt(2, 0, 1)}, 2},
		{"a chunk of another count", []Point{pt(3, 0, 2), pt(3, 1, 3)}, 0},
		{"none", nil, 0},
	} {
		got := WholeVersion(c.pts)
		switch {
		case c.want == 0 && got != nil, c.want != 0 && (got == nil || got[0].Version != c.want):
			t.Errorf("%s: got %v, want version %d", c.name, got, c.want)
		}
		for i, p := range got {
			if p.ChunkIndex != i {
				t.Errorf("%s: chunk %d at %d", c.name, p.ChunkIndex, i)
			}
		}
	}
}

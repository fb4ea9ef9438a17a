package pipeline

import (
	"cmp"
	"slices"
)

// WholeVersion returns, in chunk order, the points of the highest version of
// one document whose ChunkCount chunks are all among pts; nil when no
// version is whole (a document caught mid-write by a reader). It sorts pts
// in place.
func WholeVersion(pts []Point) []Point {
	slices.SortFunc(pts, func(a, b Point) int {
		return cmp.Or(cmp.Compare(b.Version, a.Version), cmp.Compare(a.ChunkIndex, b.ChunkIndex))
	})
	for lo := 0; lo < len(pts); {
		hi := lo
		for hi < len(pts) && pts[hi].Version == pts[lo].Version {
			hi++
		}
		if v := pts[lo:hi]; whole(v) {
			return v
		}
		lo = hi
	}
	return nil
}

// whole reports whether pts, of one version in chunk order, are chunks 0 to
// ChunkCount-1 of it.
func whole(pts []Point) bool {
	n := pts[0].ChunkCount
	if len(pts) != n {
		return false
	}
	for i, p := range pts {
		if p.ChunkIndex != i || p.ChunkCount != n {
			return false
		}
	}
	return true
}

package localstore

import (
	"bytes"
	"slices"

	"github.com/google/uuid"
)

// idLess orders point ids as their canonical strings sort.
func idLess(a, b uuid.UUID) bool { return bytes.Compare(a[:], b[:]) < 0 }

// bounded keeps the k best items offered; better(a, b) means a ranks
// before b. h is a heap whose root is the worst item kept.
type bounded[T any] struct {
	k      int
	better func(a, b T) bool
	h      []T
}

func newBounded[T any](k int, better func(a, b T) bool) *bounded[T] {
	return &bounded[T]{k: k, better: better, h: make([]T, 0, min(k, 1024))}
}

// push offers x; it reports false once more than k items have been offered,
// i.e. when x or a kept item was dropped.
func (b *bounded[T]) push(x T) bool {
	if len(b.h) < b.k {
		b.h = append(b.h, x)
		for i := len(b.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !b.better(b.h[p], b.h[i]) {
				break
			}
			b.h[p], b.h[i] = b.h[i], b.h[p]
			i = p
		}
		return true
	}
	if b.better(x, b.h[0]) {
		b.h[0] = x
		for i := 0; ; {
			worst, l, r := i, 2*i+1, 2*i+2
			if l < len(b.h) && b.better(b.h[worst], b.h[l]) {
				worst = l
			}
			if r < len(b.h) && b.better(b.h[worst], b.h[r]) {
				worst = r
			}
			if worst == i {
				break
			}
			b.h[i], b.h[worst] = b.h[worst], b.h[i]
			i = worst
		}
	}
	return false
}

// sorted returns the kept items, best first.
func (b *bounded[T]) sorted() []T {
	slices.SortFunc(b.h, func(x, y T) int {
		switch {
		case b.better(x, y):
			return -1
		case b.better(y, x):
			return 1
		}
		return 0
	})
	return b.h
}

package pipeline

import (
	"math/bits"
	"slices"
)

// termCounts counts term ids in an open-addressing table with linear
// probing, so that a text's terms are sorted once each rather than once per
// occurrence. Its storage is reused from call to call.
type termCounts struct {
	slots   []termSlot // size long, and a spare slot; count 0 marks a free slot
	size    uint32     // a power of two
	shift   uint8      // 32 - log2(size)
	used    []uint64   // the occupied slots' indexes, then their entries; size/2+1 long
	n       int        // distinct terms counted: the used ones of used
	byID    []uint64   // the entries sorted by id
	buckets []int32    // sortEntries' bucket bounds
	total   int        // term occurrences counted
}

type termSlot struct{ id, count uint32 }

const (
	minTermSlots = 512
	// maxPooledTermSlots keeps the tables of huge texts out of the pool.
	maxPooledTermSlots = 1 << 16
)

// A term entry packs a distinct term's id, in the high half so that entries
// sort by id, and its count.
func termIDOf(e uint64) uint32  { return uint32(e >> 32) }
func termCount(e uint64) uint32 { return uint32(e) }

// slot returns the first slot to probe for id.
func (c *termCounts) slot(id uint32) uint32 { return (id * 0x9e3779b1) >> (c.shift & 31) }

// alloc gives c an empty table of size slots; used keeps its first n
// indexes.
func (c *termCounts) alloc(size int) {
	c.slots = make([]termSlot, size+1)
	c.size, c.shift = uint32(size), uint8(32-bits.TrailingZeros(uint(size)))
	c.used = slices.Grow(c.used[:c.n], size/2+1-c.n)[:size/2+1]
}

// add counts one occurrence of id.
func (c *termCounts) add(id uint32) { c.addUnless(id, false) }

// addUnless counts one occurrence of id unless skip. The common case, id's
// first slot free or id's, takes one branch, which a text's terms rarely
// mispredict; new, repeated and skipped terms, which do alternate
// unpredictably, differ only in values: a skipped one goes to the spare
// slot, past the table, with an increment of 0.
func (c *termCounts) addUnless(id uint32, skip bool) {
	i, inc := c.slot(id), uint32(1)
	if skip {
		i, inc = c.size, 0
	}
	s := &c.slots[i]
	if uint64(s.id^id)*uint64(s.count) != 0 { // neither free nor id's
		c.probe(id, i)
		return
	}
	fresh := 0
	if s.count == 0 {
		fresh = int(inc)
	}
	s.id = id
	s.count += inc
	c.total += int(inc)
	c.used[c.n] = uint64(i)
	c.n += fresh
	if 2*c.n > int(c.size) {
		c.grow()
	}
}

// probe counts id, whose first slot i holds another term.
func (c *termCounts) probe(id, i uint32) {
	c.total++
	mask := c.size - 1
	for i = (i + 1) & mask; ; i = (i + 1) & mask {
		s := &c.slots[i]
		if s.count == 0 {
			s.id, s.count = id, 1
			c.used[c.n] = uint64(i)
			c.n++
			if 2*c.n > int(c.size) {
				c.grow()
			}
			return
		}
		if s.id == id {
			s.count++
			return
		}
	}
}

// grow doubles the table, keeping its entries.
func (c *termCounts) grow() {
	old := c.slots
	c.alloc(2 * int(c.size))
	mask := c.size - 1
	for k, u := range c.used[:c.n] {
		s := old[u]
		i := c.slot(s.id)
		for c.slots[i].count != 0 {
			i = (i + 1) & mask
		}
		c.slots[i] = s
		c.used[k] = uint64(i)
	}
}

// sorted returns the distinct terms as entries sorted by id, emptying the
// table; the slice is valid until reset.
func (c *termCounts) sorted() []uint64 {
	used := c.used[:c.n]
	for k, u := range used {
		s := &c.slots[u]
		used[k] = uint64(s.id)<<32 | uint64(s.count)
		*s = termSlot{}
	}
	return c.sortEntries(used)
}

// sortEntries sorts the entries used, in place or into c.byID. Ids are
// hashes, spread evenly, so one counting pass on their top bits leaves
// buckets of an entry or two, and one insertion sort of the whole then moves
// an entry by a place or two at most: far fewer mispredicted branches than a
// comparison sort, or than visiting each bucket. Crowded buckets (ids that
// do not spread, from a termID of few values) are sorted with slices.Sort.
func (c *termCounts) sortEntries(used []uint64) []uint64 {
	n := len(used)
	b := bits.Len(uint(n)) // 2^b buckets: between n and 2n
	if n < 16 || b > 16 {
		slices.Sort(used)
		return used
	}
	c.buckets = slices.Grow(c.buckets[:0], 1<<b)[:1<<b]
	c.byID = slices.Grow(c.byID[:0], n)[:n]
	ends, out, shift := c.buckets, c.byID, 64-b
	clear(ends)
	for _, e := range used {
		ends[e>>shift]++
	}
	sum, most := int32(0), int32(0)
	for k, m := range ends {
		ends[k] = sum // the bucket's start, its end once scattered
		sum += m
		most = max(most, m)
	}
	for _, e := range used {
		k := e >> shift
		out[ends[k]] = e
		ends[k]++
	}
	if most > 8 {
		slices.Sort(out)
	} else {
		insertionSort(out)
	}
	return out
}

func insertionSort(s []uint64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// reset readies c for the next text and reports whether its storage is
// small enough to keep.
func (c *termCounts) reset() bool {
	c.n, c.total = 0, 0
	return c.size <= maxPooledTermSlots
}

// Package embedder turns texts into vectors (ingest.Embedder).
//
// # The built-in hash embedder
//
// Hash (RAGPIPE_EMBEDDER=hash, the default) needs no model and no network. It
// embeds a text with signed feature hashing, the "hashing trick":
//
//  1. The text is lowercased with Unicode rules and split into words: maximal
//     runs of letters, digits and combining marks. Everything else separates
//     words, so "i-0abc123" gives the words "i" and "0abc123".
//  2. Each text yields three families of features: every word (unigram), every
//     pair of consecutive words (bigram), and the character 3-grams of every
//     word of four or more letters, padded with begin and end markers
//     ("disk" → ^di, dis, isk, sk$). The 3-grams let inflections and typos
//     ("disks", "dsik") still share most features with the original word.
//  3. Each feature is hashed with a fixed 64-bit function (no random seed):
//     32 bits of the hash pick one of the dims buckets, another, independent
//     bit picks the sign added there, so that colliding features cancel out
//     on average instead of piling up.
//  4. A feature occurring tf times adds weight·(1+ln tf): sublinear, so that a
//     word repeated fifty times does not drown the rest. Words and bigrams
//     weigh 1, 3-grams 3/8, and 67 English function words ("the",
//     "of", "which") 1/4 as unigrams; bigrams containing them keep their
//     weight, because phrases such as "of the disk" still tell texts apart.
//  5. The vector is scaled to unit length (L2), so that a dot product is the
//     cosine. A text without any feature (empty, only punctuation) gets the
//     constant unit vector whose components all equal 1/√dims, never zeros
//     or NaN, which cosine distance in Qdrant could not handle.
//
// # Why a sentence finds its document
//
// All words, bigrams and 3-grams of a sentence copied from a document are
// features of the document as well. The query vector therefore points largely
// along the document vector and their cosine is high. Another document shares
// only some common words and 3-grams and, rarely, a bigram; the hashed
// remainder of the query meets unrelated features of that document with
// random signs, which cancel out on average. So the source document ranks
// first. Bigrams weigh as much as words because word pairs are far rarer than
// words: they pin down the passage. Rare tokens (resource names, ids, error
// codes) are the other strong signal. The tests check this on 300 synthetic
// documents: a sentence's own document ranks first in at least 95% of the
// queries, for short documents and for 1–2 KB chunks alike.
//
// # Limits
//
// The hash embedder is lexical, not semantic: it knows no synonyms ("car" and
// "automobile" share nothing), no paraphrase and no translation. Having no
// corpus statistics, it cannot tell common words from rare ones beyond its
// short list of English function words. Collisions among the dims buckets
// add noise to every cosine, and it matters most for short keyword queries,
// whose bigrams rarely occur in any document and so contribute only noise:
// at 1024 dimensions a query of a few keywords finds its chunk noticeably
// less often than a full sentence does, and more dimensions help. Texts
// without spaces between words (Chinese, Japanese) form long "words" and
// match through their 3-grams. Use it for development, tests and offline
// deployments; for semantic search configure a model through the openai,
// ollama or tei providers.
//
// # Stability
//
// Vectors are stored data: changing the algorithm would make stored vectors
// incomparable with new queries. The features, hash constants and weights are
// therefore fixed, and the output is bit-for-bit identical across runs,
// processes, machines and Go versions. Hashing is integer arithmetic. The
// bucket sums are computed in a fixed order and, for any realistic text, are
// even exact: every weight has a short mantissa, and 1+ln tf is rounded to
// float32, far enough from any rounding boundary that the last bit of
// math.Log on a platform does not matter. The final scaling uses only
// correctly rounded operations, with fused multiply-adds ruled out. The one
// exception is text with characters that a later Unicode version (a later Go
// release) classifies or lowercases differently.
package embedder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxHashDims is the largest number of dimensions NewHash accepts.
const MaxHashDims = 65536

// Hash is the built-in offline embedder. See the package documentation for the
// method. A Hash is safe for concurrent use; create it with NewHash. It does
// not implement ingest.Identified: embedding a text costs it less than
// looking up a stored vector, so the stage never tries to reuse its vectors.
type Hash struct {
	dims int
	pool sync.Pool // *hashScratch, so that Embed allocates only its results
}

// NewHash returns the built-in embedder producing dims-dimensional vectors;
// dims must be 1..65536 (MaxHashDims).
func NewHash(dims int) (*Hash, error) {
	if dims < 1 || dims > MaxHashDims {
		return nil, fmt.Errorf("embedder: hash dimensions must be 1..%d, got %d", MaxHashDims, dims)
	}
	return &Hash{dims: dims}, nil
}

// Dimensions is the length of every vector Embed returns.
func (h *Hash) Dimensions() int { return h.dims }

// Embed returns one unit-length vector per text, in order. It never fails on
// any input (empty, invalid UTF-8, huge), only when ctx ends, which it checks
// before each text; then it returns an error wrapping ctx.Err() and no
// vectors. The vectors of one call share one backing array. Embed is CPU-bound,
// linear in the length of the texts, and safe for concurrent use.
func (h *Hash) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if h.dims == 0 {
		return nil, errors.New("embedder: hash embedder not created by NewHash")
	}
	done := ctx.Done()
	s, _ := h.pool.Get().(*hashScratch)
	if s == nil {
		s = &hashScratch{acc: make([]float64, h.dims), touched: make([]uint64, (h.dims+63)/64)}
	}
	defer func() {
		s.release()
		h.pool.Put(s)
	}()

	out := make([][]float32, len(texts))
	backing := make([]float32, len(texts)*h.dims)
	for i, text := range texts {
		select {
		case <-done: // nil when ctx can never end: the default case is taken
			return nil, fmt.Errorf("embedder: hash: %w", ctx.Err())
		default:
		}
		v := backing[i*h.dims : (i+1)*h.dims : (i+1)*h.dims]
		s.embed(text, v)
		out[i] = v
	}
	return out, nil
}

// Feature weights: the weight of one occurrence of a feature. They have short
// mantissas, so that every product with a tf step, and every sum of such
// products in a bucket, is exact in float64.
const (
	weightWord     = 1.0
	weightStopword = 0.25 // an English function word, see stopwords
	weightBigram   = 1.0
	weightTrigram  = 0.375
	minTrigramWord = 4 // shorter words add no 3-grams
)

// stopwords are English function words. They occur everywhere, so their
// unigrams weigh less; bigrams containing them keep their weight, since
// phrases like "of the disk" still tell documents apart.
var stopwords = strings.Fields(`a all also an and are as at be been being but by
can did do does for from has have he her his how i if in into is it its may
must no not of on or our she should so such than that the their then there
these they this to was we were what when where which who will with would you
your`)

const maxStopword = 6 // runes in the longest stop word

// Hash constants. Changing any of them changes every vector.
const (
	fnvOffset = 0xcbf29ce484222325 // FNV-1a 64, applied to runes instead of bytes
	fnvPrime  = 0x100000001b3
	seedWord  = 0x9e3779b97f4a7c15
	seedBi    = 0xc2b2ae3d27d4eb4f
	seedTri   = 0x165667b19e3779f9
	mulBi     = 0xff51afd7ed558ccd

	// A 3-gram is packed exactly into 63 bits, 21 bits per rune (Unicode ends
	// at 0x10FFFF). The padding markers lie beyond Unicode.
	runeBits  = 21
	mask3     = 1<<(3*runeBits) - 1
	markBegin = 0x110000
	markEnd   = 0x110001
)

// mix is the MurmurHash3 64-bit finalizer, a bijection with full avalanche.
func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// The keys of the three feature families. Distinct seeds keep the families
// apart.
func wordKey(state uint64) uint64       { return mix(state ^ seedWord) }
func bigramKey(prev, cur uint64) uint64 { return mix(prev*mulBi ^ cur ^ seedBi) }
func trigramKey(win uint64) uint64      { return mix(win ^ seedTri) }

// stopKeys is an open-addressing set of the word keys of stopwords.
var stopKeys = func() (t [256]uint64) {
	for _, w := range stopwords {
		state := uint64(fnvOffset)
		for _, r := range w {
			state = (state ^ uint64(r)) * fnvPrime
		}
		k := wordKey(state)
		i := k
		for t[i%uint64(len(t))] != 0 {
			i++
		}
		t[i%uint64(len(t))] = k
	}
	return t
}()

func isStopword(key uint64) bool {
	for i := key; ; i++ {
		switch stopKeys[i%uint64(len(stopKeys))] {
		case key:
			return true
		case 0:
			return false
		}
	}
}

// asciiWord maps an ASCII byte to its lowercase form if it is a letter or a
// digit, and to 0 if it separates words.
var asciiWord = func() (t [utf8.RuneSelf]byte) {
	for c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			t[c] = byte(c)
		case c >= 'A' && c <= 'Z':
			t[c] = byte(c + 'a' - 'A')
		}
	}
	return t
}()

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// tfWeight(tf) = 1+ln tf rounded to float32, so that a last-place difference
// in math.Log between platforms cannot change a vector. The k-th occurrence
// of a feature adds tfStep[k] = tfWeight(k) - tfWeight(k-1) (exact), so that
// tf occurrences add up to exactly tfWeight(tf) without counting first.
const tfSteps = 1024

var tfStep = func() (t [tfSteps]float64) {
	for k := 1; k < tfSteps; k++ {
		t[k] = tfWeight(k) - tfWeight(k-1)
	}
	return t
}()

func tfWeight(tf int) float64 {
	if tf == 0 {
		return 0
	}
	return float64(float32(1 + math.Log(float64(tf))))
}

// A slot of the open-addressing table that counts the features of one text.
// A slot is free unless its gen is the scratch's current gen, so that the
// table needs no clearing between texts.
type slot struct {
	key   uint64
	count uint32
	gen   uint32
}

// hashScratch holds the buffers of one Embed call; they are pooled.
type hashScratch struct {
	acc     []float64 // one bucket per dimension, all zero between texts
	touched []uint64  // bitmap of the buckets of acc the current text added to
	slots   []slot    // power-of-two view of table used for the current text
	table   []slot
	gen     uint32
	used    int // distinct features in slots
}

const (
	minSlots      = 64
	maxStartSlots = 1 << 16 // start no larger; grow for huge texts
	maxKeptSlots  = 1 << 18 // 4 MiB; larger tables are not kept for reuse
	maxShortText  = 256     // bytes; see reset
)

// reset prepares the feature table for a text of n bytes.
func (s *hashScratch) reset(n int) {
	// A KB of prose has about 600 distinct features; keep the load under
	// one half so that probes stay short. A short text, a search query,
	// has up to 1.2 per byte: its table is sized for that, so that it never
	// grows (growing allocates).
	need := n + n/4
	if n <= maxShortText {
		need = 5 * n / 2
	}
	want := minSlots
	for want < need && want < maxStartSlots {
		want *= 2
	}
	if len(s.table) < want {
		s.table = make([]slot, want)
		s.gen = 0
	}
	s.slots = s.table[:want]
	s.gen++
	if s.gen == 0 { // wrapped: stale slots could look current
		clear(s.table)
		s.gen = 1
	}
	s.used = 0
}

// release drops a table grown by a huge text instead of keeping it pooled.
func (s *hashScratch) release() {
	if len(s.table) > maxKeptSlots {
		s.table, s.slots = nil, nil
	}
}

// grow doubles the feature table, keeping the counts.
func (s *hashScratch) grow() {
	old, oldGen := s.slots, s.gen
	s.table = make([]slot, 2*len(old))
	s.slots = s.table
	s.gen = 1
	mask := uint64(len(s.slots) - 1)
	for _, o := range old {
		if o.gen != oldGen {
			continue
		}
		i := o.key & mask
		for s.slots[i].gen == s.gen {
			i = (i + 1) & mask
		}
		s.slots[i] = slot{key: o.key, count: o.count, gen: s.gen}
	}
}

// add records one occurrence of the feature key, whose single occurrence
// weighs w, and adds its share to acc.
func (s *hashScratch) add(key uint64, w float64, acc []float64) {
	slots := s.slots
	mask := uint64(len(slots) - 1)
	i := key
	var tf uint32
	for {
		sl := &slots[i&mask]
		if sl.gen != s.gen {
			*sl = slot{key: key, count: 1, gen: s.gen}
			tf = 1
			s.used++
			if 2*s.used > len(slots) {
				s.grow()
			}
			break
		}
		if sl.key == key {
			sl.count++
			tf = sl.count
			break
		}
		i++
	}
	step := 1.0
	if tf >= tfSteps {
		step = tfWeight(int(tf)) - tfWeight(int(tf)-1)
	} else if tf > 1 {
		step = tfStep[tf]
	}
	// The conversion forbids fusing the product into the sum (FMA), which
	// some architectures would do; both are exact anyway.
	w = float64(w * step)
	// Bucket from the high 32 bits (Lemire's multiply-shift range
	// reduction), sign from bit 31, table slot from the low bits.
	b := (key >> 32) * uint64(len(acc)) >> 32
	acc[b] += math.Float64frombits(math.Float64bits(w) ^ (key>>31&1)<<63)
	s.touched[b/64] |= 1 << (b % 64)
}

// embed writes the unit vector of text to out, len(out) == dims and out
// all zero: only the buckets the text touched are read and written, which
// for a short text (a search query) are few of the dims.
func (s *hashScratch) embed(text string, out []float32) {
	acc := s.acc[:len(out)]
	s.reset(len(text))

	var (
		n       int    // runes in the current word, 0 between words
		state   uint64 // FNV-1a over the runes of the current word
		win     uint64 // the last three symbols of the current word
		tri1    uint64 // its first two 3-gram windows, held back until it
		tri2    uint64 // is known to be long enough for 3-grams
		hasPrev bool
		prevKey uint64 // word key of the previous word
	)
	for i := 0; ; {
		// r is the next rune of a word, lowercased, or 0 at a separator
		// and at the end of the text.
		var r rune
		if i < len(text) {
			if c := text[i]; c < utf8.RuneSelf {
				r = rune(asciiWord[c])
				i++
			} else {
				var size int
				r, size = utf8.DecodeRuneInString(text[i:])
				i += size
				if isWordRune(r) {
					r = unicode.ToLower(r)
				} else {
					r = 0
				}
			}
		}
		if r != 0 {
			if n == 0 {
				state, win = fnvOffset, markBegin
			}
			n++
			state = (state ^ uint64(r)) * fnvPrime
			win = (win<<runeBits | uint64(r)) & mask3
			switch {
			case n > minTrigramWord:
				s.add(trigramKey(win), weightTrigram, acc)
			case n == minTrigramWord:
				s.add(trigramKey(tri1), weightTrigram, acc)
				s.add(trigramKey(tri2), weightTrigram, acc)
				s.add(trigramKey(win), weightTrigram, acc)
			case n == 3:
				tri2 = win
			case n == 2:
				tri1 = win // "^ab"
			}
			continue
		}
		if n > 0 { // the end of a word
			key := wordKey(state)
			w := weightWord
			if n <= maxStopword && isStopword(key) {
				w = weightStopword
			}
			s.add(key, w, acc)
			if hasPrev {
				s.add(bigramKey(prevKey, key), weightBigram, acc)
			}
			if n >= minTrigramWord {
				win = (win<<runeBits | markEnd) & mask3
				s.add(trigramKey(win), weightTrigram, acc)
			}
			prevKey, hasPrev = key, true
			n = 0
		}
		if i >= len(text) {
			break
		}
	}

	// A short text, a search query, touches few buckets: the passes visit
	// only those, in ascending order. The others hold zero and add nothing
	// to the sum, so that no bit of the vector changes. A longer text takes
	// plain passes over every bucket.
	sparse := s.used < len(acc)/8
	var sum float64
	if sparse {
		for i := range s.touchedBuckets {
			sum += float64(acc[i] * acc[i]) // the conversion forbids FMA, see add
		}
	} else {
		for _, a := range acc {
			sum += float64(a * a)
		}
	}
	switch {
	case sum == 0: // no features, or all cancelled out
		c := float32(1 / math.Sqrt(float64(len(out))))
		for i := range out {
			out[i] = c
		}
	case sparse:
		inv := 1 / math.Sqrt(sum)
		for i := range s.touchedBuckets {
			out[i] = float32(acc[i] * inv)
		}
	default:
		inv := 1 / math.Sqrt(sum)
		for i, a := range acc {
			out[i] = float32(a * inv)
		}
	}
	s.clearAcc(acc, sparse)
}

// clearAcc readies acc for the next text: it zeroes acc (only its touched
// buckets when they are few) and the whole bitmap of touched buckets.
func (s *hashScratch) clearAcc(acc []float64, sparse bool) {
	if sparse {
		for i := range s.touchedBuckets {
			acc[i] = 0
		}
	} else {
		clear(acc)
	}
	clear(s.touched)
}

// touchedBuckets yields the buckets of acc that the current text added to,
// in ascending order.
func (s *hashScratch) touchedBuckets(yield func(int) bool) {
	for w, word := range s.touched {
		for ; word != 0; word &= word - 1 {
			if !yield(w*64 + bits.TrailingZeros64(word)) {
				return
			}
		}
	}
}

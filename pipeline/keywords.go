package pipeline

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// Keyword weights are BM25's term-frequency part; the store multiplies them
// by each term's IDF, which only it knows (Qdrant's idf modifier).
//
// The length normalisation needs the collection's average chunk length,
// which ragpipe cannot know when it writes one chunk, so it uses a fixed
// one: bm25AvgLen terms is about what a full chunk of the default chunker
// (2000 characters) of documentation holds, so full chunks are weighed as
// average and only shorter ones (a document's tail, a short document) get
// BM25's boost. Most chunks of a collection are full chunks of long
// documents or short documents whole, so no single true average is much
// more right; a guess too high only weakens the normalisation a little.
const (
	bm25K1     = 1.2
	bm25B      = 0.75
	bm25AvgLen = 250
)

// maxTermLen bounds a term in bytes: longer tokens (base64, minified code,
// hashes longer than SHA-256 hex) are left out of the keyword vector.
const maxTermLen = 64

// Keywords returns the keyword vector of a chunk's text: one entry per
// distinct term, its id the term's FNV-1a 32 hash (distinct terms whose
// hashes collide are merged), its weight BM25's saturated, length-normalised
// term frequency (k1 1.2, b 0.75). It returns nil for a text with no terms.
//
// Terms are the text's lowercased words (runs of Unicode letters and
// digits), less a few English stop words, plurals folded by Harman's
// S-stemmer. A compound joined by _ - . / \ : or ' or written in camelCase
// gives its parts and also itself whole, its parts concatenated:
// maxAckPending, max_ack_pending and max-ack-pending all give max, ack,
// pending and maxackpending; /etc/nats/nats.conf gives etc, nat, conf and
// etcnatsnatsconf. Each Han, Hiragana or Katakana character is a term.
//
// Keywords is safe for concurrent use.
func Keywords(text string) *SparseVector { return keywords(text, nil) }

// KeywordsWith is Keywords with the term ids termID gives (the lowercased,
// stemmed term's bytes, valid only during the call) instead of FNV-1a: with
// a tenant's keyed term ids (encryption at rest), the stored index reveals
// no word.
func KeywordsWith(text string, termID func(term []byte) uint32) *SparseVector {
	return keywords(text, termID)
}

func keywords(text string, termID func([]byte) uint32) *SparseVector {
	return termVector(text, termID, false)
}

// QueryKeywords returns the keyword vector of a search's text: its distinct
// terms (as Keywords finds them), each of weight 1, so that a chunk's score
// is the sum of its weights times the IDF of the terms it shares with the
// query. It returns nil for a text with no terms.
func QueryKeywords(text string) *SparseVector { return queryKeywords(text, nil) }

// QueryKeywordsWith is QueryKeywords with the term ids termID gives, as
// KeywordsWith: a search of chunks stored with keyed term ids uses the same
// key.
func QueryKeywordsWith(text string, termID func(term []byte) uint32) *SparseVector {
	return queryKeywords(text, termID)
}

func queryKeywords(text string, termID func([]byte) uint32) *SparseVector {
	return termVector(text, termID, true)
}

// termVector returns the vector of text's distinct terms, sorted by id:
// weighed by BM25, or of weight 1 each for a query; nil when text has none.
func termVector(text string, termID func([]byte) uint32, query bool) *SparseVector {
	t := getTokenizer(termID)
	terms := t.terms(text)
	if len(terms) == 0 {
		t.release()
		return nil
	}
	v := &SparseVector{Indices: make([]uint32, len(terms)), Values: make([]float32, len(terms))}
	for i, e := range terms {
		v.Indices[i] = termIDOf(e)
	}
	if query {
		for i := range v.Values {
			v.Values[i] = 1
		}
		t.release()
		return v
	}
	// Most terms occur a few times: their weights are worked out once.
	norm := bm25K1 * (1 - bm25B + bm25B*float32(t.counts.total)/bm25AvgLen)
	var weights [8]float32 // of tf 0 to 7
	for tf := range weights {
		weights[tf] = bm25Weight(float32(tf), norm)
	}
	for i, e := range terms {
		if tf := termCount(e); tf < uint32(len(weights)) {
			v.Values[i] = weights[tf]
		} else {
			v.Values[i] = bm25Weight(float32(tf), norm)
		}
	}
	t.release()
	return v
}

// bm25Weight is BM25's weight of a term of frequency tf in a text of
// length normalisation norm.
func bm25Weight(tf, norm float32) float32 { return tf * (bm25K1 + 1) / (tf + norm) }

// tokenizers recycles the scratch of Keywords, which runs for every chunk
// the worker writes.
var tokenizers = sync.Pool{New: func() any { return new(tokenizer) }}

// tokenizer turns a text into counted term ids. Its buffers hold lowercased
// bytes; partLen and wholeLen count bytes beyond the buffers' maxTermLen as
// well, so that an overlong term is recognised and skipped. The part's
// FNV-1a hash grows byte by byte as the part does, and the compound
// whole's from its parts' as they end; the whole's bytes are kept only for
// a keyed termID.
type tokenizer struct {
	counts    termCounts
	termID    func([]byte) uint32 // nil: FNV-1a
	part      [maxTermLen]byte
	partLen   int
	partHash  uint32           // FNV-1a of the part's bytes
	partTail  uint64           // the part's last eight bytes, the last in the low byte
	whole     [maxTermLen]byte // the compound's parts, concatenated (keyed termID only)
	wholeLen  int
	wholeHash uint32 // FNV-1a of the compound's parts, concatenated (FNV-1a ids only)
	parts     int    // parts of the current compound
}

func getTokenizer(termID func([]byte) uint32) *tokenizer {
	t := tokenizers.Get().(*tokenizer)
	t.termID = termID
	t.partHash, t.wholeHash = fnvOffset, fnvOffset
	if len(t.counts.slots) == 0 {
		t.counts.alloc(minTermSlots)
	}
	return t
}

// release returns t to the pool. A tokenizer whose scan did not finish (a
// termID that panicked) is never released: its table is not empty.
func (t *tokenizer) release() {
	t.termID = nil
	if t.counts.reset() {
		tokenizers.Put(t)
	}
}

// terms scans text and returns its distinct terms as entries (termIDOf,
// termCount) sorted by id; the slice is the tokenizer's, valid until
// release.
func (t *tokenizer) terms(text string) []uint64 {
	t.scan(text)
	return t.counts.sorted()
}

// Rune classes of the tokenizer.
const (
	classSpace     = iota // ends a compound
	classJoin             // joins the parts of a compound
	classLower            // a word character that starts no camelCase part: lowercase, digits, caseless letters, marks
	classUpper            // an uppercase letter
	classIdeograph        // a term by itself
	classMultiByte        // a byte of a multi-byte rune: decode it, then classOf
)

// byteClass classifies the bytes: ASCII ones fully, the others as
// classMultiByte.
var byteClass = func() (c [256]uint8) {
	for b := range c {
		switch {
		case b >= utf8.RuneSelf:
			c[b] = classMultiByte
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9':
			c[b] = classLower
		case 'A' <= b && b <= 'Z':
			c[b] = classUpper
		case b == '_', b == '-', b == '.', b == '/', b == '\\', b == ':', b == '\'':
			c[b] = classJoin
		}
	}
	return c
}()

// classOf classifies a rune.
func classOf(r rune) uint8 {
	switch {
	case r < utf8.RuneSelf:
		return byteClass[r]
	case r == '’':
		return classJoin
	case unicode.IsUpper(r):
		return classUpper
	case unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana):
		return classIdeograph
	case unicode.IsLetter(r), unicode.IsDigit(r), unicode.IsMark(r):
		return classLower
	}
	return classSpace
}

// next decodes the rune of s at i and its class.
func next(s string, i int) (r rune, size int, class uint8) {
	if b := s[i]; b < utf8.RuneSelf {
		return rune(b), 1, byteClass[b]
	}
	r, size = utf8.DecodeRuneInString(s[i:])
	return r, size, classOf(r)
}

// scan counts the terms of text in t.counts.
func (t *tokenizer) scan(text string) {
	prev := uint8(classSpace)
	for i := 0; i < len(text); {
		b := text[i]
		class := byteClass[b]
		if class == classLower {
			// The common case: a run of ASCII lowercase letters and digits,
			// copied and hashed at once.
			i = t.addLowerRun(text, i)
			prev = class
			continue
		}
		r, size := rune(b), 1
		if class == classMultiByte {
			r, size = utf8.DecodeRuneInString(text[i:])
			class = classOf(r)
		}
		i += size
		switch class {
		case classSpace:
			if t.parts|t.partLen != 0 {
				t.endCompound()
			}
		case classJoin:
			t.endPart()
		case classIdeograph:
			t.endCompound()
			t.add(r)
			t.endCompound()
		case classUpper:
			// A new part starts at an uppercase letter after a lowercase
			// one (maxAck), and at the last of a run of uppercase letters
			// followed by a lowercase one (HTTPServer).
			if prev == classLower {
				t.endPart()
			} else if prev == classUpper && i < len(text) {
				if _, _, c := next(text, i); c == classLower {
					t.endPart()
				}
			}
			if r < utf8.RuneSelf {
				t.addByte(b + 'a' - 'A')
			} else {
				t.add(unicode.ToLower(r))
			}
		default: // a non-ASCII letter, digit or mark that starts no part
			t.add(r)
		}
		prev = class
	}
	t.endCompound()
}

// addLowerRun appends to the current part the run of ASCII lowercase
// letters and digits of text that begins at i, and returns the run's end.
func (t *tokenizer) addLowerRun(text string, i int) int {
	n, h, tail := t.partLen, t.partHash, t.partTail
	for ; i < len(text); i++ {
		c := text[i]
		if byteClass[c] != classLower {
			break
		}
		if n < maxTermLen {
			t.part[n] = c
		}
		n++
		h = (h ^ uint32(c)) * fnvPrime
		tail = tail<<8 | uint64(c)
	}
	t.partLen, t.partHash, t.partTail = n, h, tail
	return i
}

// add appends the lowercased rune r to the current part.
func (t *tokenizer) add(r rune) {
	if r < utf8.RuneSelf {
		b := byte(r)
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		t.addByte(b)
		return
	}
	var buf [utf8.UTFMax]byte
	for _, b := range buf[:utf8.EncodeRune(buf[:], r)] {
		t.addByte(b)
	}
}

// addByte appends b to the current part.
func (t *tokenizer) addByte(b byte) {
	if t.partLen < maxTermLen {
		t.part[t.partLen] = b
	}
	t.partLen++
	t.partHash = (t.partHash ^ uint32(b)) * fnvPrime
	t.partTail = t.partTail<<8 | uint64(b)
}

// endPart ends the current part, if any: it joins the compound whole and,
// unless a stop word or too long, gives a term.
func (t *tokenizer) endPart() {
	if t.partLen == 0 {
		return
	}
	n, h, tail := t.partLen, t.partHash, t.partTail
	t.partLen, t.partHash, t.partTail = 0, fnvOffset, 0
	t.parts++
	switch {
	case t.wholeLen+n > maxTermLen: // the whole is too long to be a term
	case t.termID != nil:
		copy(t.whole[t.wholeLen:], t.part[:n])
	case t.parts == 1:
		t.wholeHash = h
	default:
		t.wholeHash = fnvAdd(t.wholeHash, t.part[:n])
	}
	t.wholeLen += n
	if n > maxTermLen {
		return
	}
	stop := isStopWord(termKey(tail, n))
	if t.termID != nil {
		if !stop {
			t.counts.add(t.termID(stemBytes(t.part[:n], tail)))
		}
		return
	}
	// Stop words, common and in no pattern, are counted in a slot that is
	// never read rather than branched around.
	t.counts.addUnless(stemHash(h, tail, n), stop)
}

// endCompound ends the current compound: of two parts or more, it gives the
// whole as a term too.
func (t *tokenizer) endCompound() {
	t.endPart()
	if t.parts > 1 && t.wholeLen <= maxTermLen {
		if t.termID != nil {
			t.counts.add(t.termID(t.whole[:t.wholeLen]))
		} else {
			t.counts.add(t.wholeHash)
		}
	}
	t.parts, t.wholeLen, t.wholeHash = 0, 0, fnvOffset
}

// stem folds English plurals (Harman's S-stemmer): -ies to -y (queries,
// query), -es to -e (caches, cache), -s dropped (files, file), except after
// a, e, o before -es (toes), and in -us and -ss (status, process). Words of
// three letters or fewer are left alone. It tells what to do to a term of
// n bytes whose last bytes are tail: stemKeep, stemDrop (the last byte) or
// stemIesY (-ies to -y).
func stem(tail uint64, n int) int {
	if n <= 3 || byte(tail) != 's' {
		return stemKeep
	}
	c2, c3, c4 := byte(tail>>8), byte(tail>>16), byte(tail>>24) // before the s
	switch {
	case c3 == 'i' && c2 == 'e':
		if c4 == 'e' || c4 == 'a' {
			return stemKeep
		}
		return stemIesY
	case c2 == 'e':
		if c3 == 'a' || c3 == 'e' || c3 == 'o' {
			return stemKeep
		}
	case c2 == 'u' || c2 == 's':
		return stemKeep
	}
	return stemDrop
}

// What stem does to a term.
const (
	stemKeep = iota
	stemDrop
	stemIesY
)

// stemBytes returns the stem of the term w whose last bytes are tail,
// writing over w.
func stemBytes(w []byte, tail uint64) []byte {
	switch n := len(w); stem(tail, n) {
	case stemDrop:
		return w[:n-1]
	case stemIesY:
		w[n-3] = 'y'
		return w[:n-2]
	}
	return w
}

// stemHash returns the FNV-1a hash of the stem of a term whose hash is h
// and last bytes tail, without hashing it again: FNV-1a's steps are undone
// with the inverse of its prime.
func stemHash(h uint32, tail uint64, n int) uint32 {
	switch stem(tail, n) {
	case stemDrop:
		return (h * fnvPrimeInverse) ^ uint32(tail&0xff)
	case stemIesY:
		for range 3 { // undo s, e, i
			h = (h * fnvPrimeInverse) ^ uint32(tail&0xff)
			tail >>= 8
		}
		return (h ^ 'y') * fnvPrime
	}
	return h
}

// fnvAdd continues the FNV-1a 32 hash h with the bytes of b.
func fnvAdd(h uint32, b []byte) uint32 {
	for _, c := range b {
		h = (h ^ uint32(c)) * fnvPrime
	}
	return h
}

// The parameters of FNV-1a 32, and the prime's inverse modulo 2^32.
const (
	fnvOffset       = 2166136261
	fnvPrime        = 16777619
	fnvPrimeInverse = 0x359c449b
)

// stopWords are left out of keyword vectors: Lucene's English stop words,
// the words of questions (who, what, how, ...) and the contraction tails s
// and t. They carry little of a text's subject, and leaving them out makes
// vectors shorter; the store's IDF would weigh them down anyway.
var stopWords = []string{
	"a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if",
	"in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that",
	"the", "their", "then", "there", "these", "they", "this", "to", "was",
	"will", "with",
	"what", "which", "who", "whom", "when", "where", "why", "how", "do",
	"does", "did", "can", "i", "me", "my", "we", "our", "you", "your",
	"s", "t",
}

// A term's key packs its length, in the top byte, and its last seven
// bytes, the last in the low byte: two terms of at most seven bytes have
// the same key only if they are the same, and a term longer than every
// stop word has the key of none. tail is the term's last eight
// bytes, kept in a register as the term is scanned, so that the stop-word
// test waits neither for the term's hash nor for its bytes' stores.
func termKey(tail uint64, n int) uint64 { return tail&(1<<56-1) | uint64(n)<<56 }

// stopKeys holds the stop words' keys, each in the slot stopSlot gives:
// stopMul is a multiplier under which no two of them share a slot, so a
// lookup is one load and one comparison.
var stopKeys = func() (table [1 << stopBits]uint64) {
	for _, w := range stopWords {
		var tail uint64
		for _, c := range []byte(w) {
			tail = tail<<8 | uint64(c)
		}
		k := termKey(tail, len(w))
		table[stopSlot(k)] = k
	}
	return table
}()

const (
	stopBits = 8
	stopMul  = 0x476cf802330034e5
)

func stopSlot(key uint64) uint64 { return key * stopMul >> (64 - stopBits) }

// isStopWord reports whether the term of key is a stop word.
func isStopWord(key uint64) bool { return stopKeys[stopSlot(key)] == key }

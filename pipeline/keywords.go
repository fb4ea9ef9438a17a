package pipeline

import (
	"slices"
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
	return withTerms(text, termID, weigh)
}

// weigh gives each distinct term of sorted terms its BM25 weight.
func weigh(terms []uint32) *SparseVector {
	norm := bm25K1 * (1 - bm25B + bm25B*float32(len(terms))/bm25AvgLen)
	n := distinct(terms)
	v := &SparseVector{Indices: make([]uint32, 0, n), Values: make([]float32, 0, n)}
	for i := 0; i < len(terms); {
		j := i + 1
		for j < len(terms) && terms[j] == terms[i] {
			j++
		}
		tf := float32(j - i)
		v.Indices = append(v.Indices, terms[i])
		v.Values = append(v.Values, tf*(bm25K1+1)/(tf+norm))
		i = j
	}
	return v
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
	return withTerms(text, termID, func(terms []uint32) *SparseVector {
		ids := slices.Compact(terms)
		v := &SparseVector{Indices: slices.Clone(ids), Values: make([]float32, len(ids))}
		for i := range v.Values {
			v.Values[i] = 1
		}
		return v
	})
}

// withTerms scans text into term ids (termID's, or FNV-1a when nil) with a
// pooled tokenizer and returns vector of them sorted, or nil when text has
// no terms; the slice is the tokenizer's, valid only during the call.
func withTerms(text string, termID func([]byte) uint32, vector func(sorted []uint32) *SparseVector) *SparseVector {
	t := tokenizers.Get().(*tokenizer)
	defer t.release()
	t.termID = termID
	t.scan(text)
	if len(t.terms) == 0 {
		return nil
	}
	slices.Sort(t.terms)
	return vector(t.terms)
}

// distinct counts the distinct values of sorted.
func distinct(sorted []uint32) int {
	n := 0
	for i, x := range sorted {
		if i == 0 || x != sorted[i-1] {
			n++
		}
	}
	return n
}

// tokenizers recycles the scratch of Keywords, which runs for every chunk
// the worker writes.
var tokenizers = sync.Pool{New: func() any {
	return &tokenizer{terms: make([]uint32, 0, 512)}
}}

// tokenizer turns a text into term ids. Its buffers hold lowercased bytes;
// partLen and wholeLen count bytes beyond the buffers' maxTermLen as well,
// so that an overlong term is recognised and skipped.
type tokenizer struct {
	terms    []uint32            // term ids, in text order
	termID   func([]byte) uint32 // nil: FNV-1a
	part     [maxTermLen]byte
	partLen  int
	whole    [maxTermLen]byte // the compound's parts, concatenated
	wholeLen int
	parts    int // parts of the current compound
}

func (t *tokenizer) release() {
	if cap(t.terms) > 1<<16 {
		return // keep huge texts' scratch out of the pool
	}
	t.terms = t.terms[:0]
	t.termID = nil
	tokenizers.Put(t)
}

// Rune classes of the tokenizer.
const (
	classSpace     = iota // ends a compound
	classJoin             // joins the parts of a compound
	classLower            // a word character that starts no camelCase part: lowercase, digits, caseless letters, marks
	classUpper            // an uppercase letter
	classIdeograph        // a term by itself
)

// asciiClass classifies the ASCII bytes.
var asciiClass = func() (c [128]uint8) {
	for b := range c {
		switch {
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
		return asciiClass[r]
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
		return rune(b), 1, asciiClass[b]
	}
	r, size = utf8.DecodeRuneInString(s[i:])
	return r, size, classOf(r)
}

// scan appends the term ids of text to t.terms.
func (t *tokenizer) scan(text string) {
	prev := uint8(classSpace)
	for i := 0; i < len(text); {
		r, size, class := next(text, i)
		i += size
		switch class {
		case classSpace:
			t.endCompound()
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
			t.add(unicode.ToLower(r))
		default:
			if r >= utf8.RuneSelf {
				t.add(r)
				break
			}
			// The common case: a run of ASCII lowercase letters and digits,
			// copied at once.
			start := i - 1
			for i < len(text) && text[i] < utf8.RuneSelf && asciiClass[text[i]] == classLower {
				i++
			}
			if n := i - start; t.partLen+n <= maxTermLen {
				copy(t.part[t.partLen:], text[start:i])
			}
			t.partLen += i - start
		}
		prev = class
	}
	t.endCompound()
}

// add appends the lowercased rune r to the current part.
func (t *tokenizer) add(r rune) {
	if r < utf8.RuneSelf {
		if b := byte(r); t.partLen < maxTermLen {
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			t.part[t.partLen] = b
		}
		t.partLen++
		return
	}
	if t.partLen+utf8.RuneLen(r) <= maxTermLen {
		utf8.EncodeRune(t.part[t.partLen:], r)
	}
	t.partLen += utf8.RuneLen(r)
}

// endPart ends the current part, if any: it joins the compound whole and,
// unless a stop word or too long, gives a term.
func (t *tokenizer) endPart() {
	if t.partLen == 0 {
		return
	}
	n := t.partLen
	t.partLen = 0
	t.parts++
	if t.wholeLen+n <= maxTermLen {
		copy(t.whole[t.wholeLen:], t.part[:n])
	}
	t.wholeLen += n
	if n > maxTermLen {
		return
	}
	p := t.part[:n]
	if t.termID != nil { // keyed: the FNV-1a hash only finds stop words
		if n <= maxStopLen && isStopWord(p, fnv32(p)) {
			return
		}
		t.terms = append(t.terms, t.termID(stem(p)))
		return
	}
	h := fnv32(p)
	if n <= maxStopLen && isStopWord(p, h) {
		return
	}
	if s := stem(p); len(s) < n {
		h = fnv32(s)
	}
	t.terms = append(t.terms, h)
}

// endCompound ends the current compound: of two parts or more, it gives the
// whole as a term too.
func (t *tokenizer) endCompound() {
	t.endPart()
	if t.parts > 1 && t.wholeLen <= maxTermLen {
		if t.termID != nil {
			t.terms = append(t.terms, t.termID(t.whole[:t.wholeLen]))
		} else {
			t.terms = append(t.terms, fnv32(t.whole[:t.wholeLen]))
		}
	}
	t.parts, t.wholeLen = 0, 0
}

// stem folds English plurals (Harman's S-stemmer): -ies to -y (queries,
// query), -es to -e (caches, cache), -s dropped (files, file), except after
// a, e, o before -es (toes), and in -us and -ss (status, process). Words of
// three letters or fewer are left alone.
func stem(w []byte) []byte {
	n := len(w)
	if n <= 3 || w[n-1] != 's' {
		return w
	}
	switch {
	case w[n-3] == 'i' && w[n-2] == 'e':
		if w[n-4] == 'e' || w[n-4] == 'a' {
			return w
		}
		w[n-3] = 'y'
		return w[:n-2]
	case w[n-2] == 'e':
		if c := w[n-3]; c == 'a' || c == 'e' || c == 'o' {
			return w
		}
		return w[:n-1]
	case w[n-2] == 'u' || w[n-2] == 's':
		return w
	}
	return w[:n-1]
}

// fnv32 is the 32-bit FNV-1a hash of b.
func fnv32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

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

// maxStopLen is the length of the longest stop word.
const maxStopLen = 5

// stopTable holds the stop words by their FNV-1a hash, open addressing with
// linear probing: a lookup costs the hash the term needs anyway and one or
// two string comparisons, where a map would hash the word again.
var stopTable = func() (table [256]string) {
	for _, w := range stopWords {
		i := fnv32([]byte(w))
		for table[i%256] != "" {
			i++
		}
		table[i%256] = w
	}
	return table
}()

// isStopWord reports whether w, of hash h, is a stop word.
func isStopWord(w []byte, h uint32) bool {
	for i := h; stopTable[i%256] != ""; i++ {
		if stopTable[i%256] == string(w) {
			return true
		}
	}
	return false
}

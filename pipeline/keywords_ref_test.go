package pipeline

import (
	"slices"
	"unicode"
	"unicode/utf8"
)

// The keyword tokenizer as it was before term counting moved to a table:
// every occurrence's id appended, then all of them sorted. It is the
// reference the identity tests hold the current one to; it shares the
// unchanged rune classes and the list of stop words, and keeps its own
// copy of the stemmer as it was, on the term's bytes.

func refKeywords(text string, termID func([]byte) uint32) *SparseVector {
	return refWithTerms(text, termID, refWeigh)
}

func refQueryKeywords(text string, termID func([]byte) uint32) *SparseVector {
	return refWithTerms(text, termID, func(terms []uint32) *SparseVector {
		ids := slices.Compact(terms)
		v := &SparseVector{Indices: slices.Clone(ids), Values: make([]float32, len(ids))}
		for i := range v.Values {
			v.Values[i] = 1
		}
		return v
	})
}

func refWeigh(terms []uint32) *SparseVector {
	norm := bm25K1 * (1 - bm25B + bm25B*float32(len(terms))/bm25AvgLen)
	v := &SparseVector{}
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

func refWithTerms(text string, termID func([]byte) uint32, vector func(sorted []uint32) *SparseVector) *SparseVector {
	t := &refTokenizer{termID: termID}
	t.scan(text)
	if len(t.terms) == 0 {
		return nil
	}
	slices.Sort(t.terms)
	return vector(t.terms)
}

type refTokenizer struct {
	terms    []uint32
	termID   func([]byte) uint32
	part     [maxTermLen]byte
	partLen  int
	whole    [maxTermLen]byte
	wholeLen int
	parts    int
}

func refNext(s string, i int) (r rune, size int, class uint8) {
	if b := s[i]; b < utf8.RuneSelf {
		return rune(b), 1, classOf(rune(b))
	}
	r, size = utf8.DecodeRuneInString(s[i:])
	return r, size, classOf(r)
}

func (t *refTokenizer) scan(text string) {
	prev := uint8(classSpace)
	for i := 0; i < len(text); {
		r, size, class := refNext(text, i)
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
			if prev == classLower {
				t.endPart()
			} else if prev == classUpper && i < len(text) {
				if _, _, c := refNext(text, i); c == classLower {
					t.endPart()
				}
			}
			t.add(unicode.ToLower(r))
		default:
			if r >= utf8.RuneSelf {
				t.add(r)
				break
			}
			start := i - 1
			for i < len(text) && text[i] < utf8.RuneSelf && classOf(rune(text[i])) == classLower {
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

func (t *refTokenizer) add(r rune) {
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

func (t *refTokenizer) endPart() {
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
	if t.termID != nil {
		if slices.Contains(stopWords, string(p)) {
			return
		}
		t.terms = append(t.terms, t.termID(refStem(p)))
		return
	}
	h := fnv32(p)
	if slices.Contains(stopWords, string(p)) {
		return
	}
	if s := refStem(p); len(s) < n {
		h = fnv32(s)
	}
	t.terms = append(t.terms, h)
}

func (t *refTokenizer) endCompound() {
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

// refStem folds English plurals (Harman's S-stemmer): -ies to -y (queries,
// query), -es to -e (caches, cache), -s dropped (files, file), except after
// a, e, o before -es (toes), and in -us and -ss (status, process). Words of
// three letters or fewer are left alone.
func refStem(w []byte) []byte {
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
func fnv32(b []byte) uint32 { return fnvAdd(fnvOffset, b) }

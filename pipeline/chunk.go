package pipeline

import (
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Chunker splits text into contiguous pieces of at most Size characters (runes), consecutive pieces overlapping by about Overlap characters, preferring paragraph, then sentence, then word boundaries, and cutting mid-word only when a word is longer than a piece.
//
// The contract's defaults (RAGPIPE_CHUNK_SIZE=2000, RAGPIPE_CHUNK_OVERLAP=200)
// are chosen for embedding models: 2000 characters are about 400-500 tokens of
// English, which fits the window of every common embedding model (512 tokens
// for the BGE and E5 class, more for the others), so no chunk is silently
// truncated by the embedder, while a chunk still holds a few paragraphs of
// context. An overlap of 10% keeps a sentence that straddles a boundary whole
// in one of the two chunks (a typical sentence is well under 200 characters)
// at the cost of embedding about 10% more text.
//
// A single line break (as in lists and logs) ranks between a sentence and a
// word boundary. Among the boundaries that leave a chunk at least half full,
// the strongest kind wins and, of that kind, the last one.
//
// In detail, Split guarantees that:
//   - chunks are substrings of the text, in order, with no surrounding
//     whitespace (they share the text's memory);
//   - every non-whitespace character of the text is in at least one chunk;
//   - a chunk has at most size characters;
//   - consecutive chunks share at most overlap characters;
//   - a chunk ends inside a word only when that word alone exceeds size.
//
// A Chunker is immutable and safe for concurrent use.
type Chunker struct{ size, overlap int }

// NewChunker returns a Chunker; it fails unless size >= 1 and 0 <= overlap < size.
func NewChunker(size, overlap int) (*Chunker, error) {
	if size < 1 {
		return nil, fmt.Errorf("chunk size %d is less than 1", size)
	}
	if overlap < 0 || overlap >= size {
		return nil, fmt.Errorf("chunk overlap %d must be at least 0 and less than the chunk size %d", overlap, size)
	}
	return &Chunker{size: size, overlap: overlap}, nil
}

// gapKind ranks the places where a chunk may end, weakest first.
type gapKind uint8

const (
	gapWord      gapKind = iota + 1 // whitespace between words
	gapLine                         // whitespace holding one line break
	gapSentence                     // whitespace after . ! ? …, or the place after a CJK full stop
	gapParagraph                    // whitespace holding a blank line
)

// chunkGap is a place where a chunk may end: text[start:end] is whitespace
// (empty after a CJK full stop, which needs none). The next chunk may begin
// at end.
type chunkGap struct {
	start, end       int // byte offsets in the text
	startIdx, endIdx int // rune offsets of start and end from the chunk's start
	kind             gapKind
}

// maxGapLookahead bounds how far past the window a whitespace run is read to
// tell a paragraph break from a line break, so that long runs of whitespace
// are not read over and over.
const maxGapLookahead = 64

// chunkGapPool recycles the gap lists of Split: a window of the default 2000
// characters holds some 300 gaps, and allocating them for every document
// would cost more than the scan itself.
var chunkGapPool = sync.Pool{New: func() any { return new([]chunkGap) }}

// maxPooledGaps keeps the lists of huge windows out of the pool.
const maxPooledGaps = 1 << 14

// Split returns the chunks of text; a text that fits in one chunk is returned whole; empty/whitespace-only text → no chunks.
//
// It runs in time linear in the length of text (for a fixed size and
// overlap) and allocates little beyond the returned slice.
func (c *Chunker) Split(text string) []string {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
	}
	if len(text) <= c.size || utf8.RuneCountInString(text) <= c.size {
		return []string{text} // the common case of a short document, without a scan
	}
	chunks := make([]string, 0, len(text)/(c.size-c.overlap)+1)
	pooled := chunkGapPool.Get().(*[]chunkGap)
	gaps := (*pooled)[:0]
	defer func() {
		if cap(gaps) <= maxPooledGaps {
			*pooled = gaps[:0]
			chunkGapPool.Put(pooled)
		}
	}()
	s := 0                     // start of the current chunk
	prevEnd, prevNext := -1, 0 // end of the previous chunk, and the first non-space after it
	for {
		w, gaps1, whole := c.scan(text, s, gaps[:0])
		gaps = gaps1
		if whole {
			return append(chunks, text[s:])
		}
		g := c.pickEnd(gaps)
		e, eIdx, next := w, c.size, w // no gap: cut mid-word at the window's end
		if g >= 0 {
			e, eIdx, next = gaps[g].start, gaps[g].startIdx, gaps[g].end
		}
		if e <= prevEnd {
			// The overlap left no room for the word after the previous
			// chunk: begin right after that chunk instead.
			s = prevNext
			continue
		}
		chunks = append(chunks, text[s:e])
		ns := c.nextStart(text, s, e, eIdx, next, gaps, g < 0)
		prevEnd, prevNext = e, skipSpace(text, next)
		s = skipSpace(text, ns)
	}
}

// scan reads the window of c.size runes that begins at s, appending to gaps
// every place in it where the chunk may end. It returns the window's end w, or
// whole when the rest of the text fits in the window.
func (c *Chunker) scan(text string, s int, gaps []chunkGap) (w int, _ []chunkGap, whole bool) {
	size := c.size
	p, idx := s, 0
	sentEnd := false // the last non-space rune ends a sentence
	for p < len(text) {
		if chunkPlain[text[p]] {
			// A run of ASCII that neither is space nor ends a sentence,
			// read at once up to the window's end.
			if idx == size {
				return p, gaps, false
			}
			q, lim := p+1, min(len(text), p+size-idx)
			for q < lim && chunkPlain[text[q]] {
				q++
			}
			idx += q - p
			p = q
			sentEnd = false
			continue
		}
		r, n := rune(text[p]), 1 // decodeRuneAt, inlined by hand: this is the hot loop
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(text[p:])
		}
		if !isSpaceRune(r) {
			if idx == size {
				return p, gaps, false
			}
			p += n
			idx++
			switch {
			case r == '.' || r == '!' || r == '?' || r == '…':
				sentEnd = true
			case r == '。' || r == '！' || r == '？' || r == '｡':
				// CJK text has no space after a full stop; it is a gap by itself.
				sentEnd = true
				gaps = append(gaps, chunkGap{start: p, end: p, startIdx: idx, endIdx: idx, kind: gapSentence})
			case isCloser(r):
				// `."` and `。」` end a sentence too: keep sentEnd and move a
				// CJK stop's gap past the closer.
				if k := len(gaps) - 1; k >= 0 && gaps[k].end == p-n && gaps[k].start == gaps[k].end {
					gaps[k].start, gaps[k].end, gaps[k].startIdx, gaps[k].endIdx = p, p, idx, idx
				}
			default:
				sentEnd = false
			}
			continue
		}

		// A run of whitespace is one gap.
		if k := len(gaps) - 1; k >= 0 && gaps[k].end == p {
			gaps = gaps[:k] // a CJK stop followed by whitespace: the run is the gap
		}
		g := chunkGap{start: p, startIdx: idx, kind: gapWord}
		newlines, full := 0, false
		for p < len(text) {
			if r, n = rune(text[p]), 1; r >= utf8.RuneSelf {
				r, n = utf8.DecodeRuneInString(text[p:])
			}
			if !isSpaceRune(r) {
				break
			}
			if idx == size && !full {
				full, w = true, p // the window ends in this run
			}
			if full && (newlines >= 2 || p-w >= maxGapLookahead) {
				break
			}
			if r == '\n' {
				newlines++
			}
			p += n
			idx++
		}
		g.end, g.endIdx = p, idx
		switch {
		case newlines >= 2:
			g.kind = gapParagraph
		case sentEnd:
			g.kind = gapSentence
		case newlines == 1:
			g.kind = gapLine
		}
		gaps = append(gaps, g)
		sentEnd = false
		if full {
			return w, gaps, false
		}
	}
	return len(text), gaps, true
}

// chunkPlain marks the ASCII bytes that scan reads as one run: neither
// space nor an end of sentence nor a closer.
var chunkPlain = func() (plain [256]bool) {
	for b := range utf8.RuneSelf {
		r := rune(b)
		plain[b] = !isSpaceRune(r) && !isCloser(r) && r != '.' && r != '!' && r != '?'
	}
	return plain
}()

// pickEnd returns the index of the gap where the chunk ends: the last gap of
// the strongest kind among those leaving the chunk at least half full (and
// longer than the overlap, so that the next chunk starts further on), else
// the last gap, else -1 when the window holds a single word.
func (c *Chunker) pickEnd(gaps []chunkGap) int {
	minLen := max(c.size/2, c.overlap+1)
	best := [gapParagraph + 1]int{-1, -1, -1, -1, -1}
	for i := range gaps {
		if gaps[i].startIdx >= minLen {
			best[gaps[i].kind] = i
		}
	}
	for k := gapParagraph; k >= gapWord; k-- {
		if best[k] >= 0 {
			return best[k]
		}
	}
	return len(gaps) - 1
}

// nextStart returns where the chunk after text[s:e] begins so that the two
// overlap by at most c.overlap runes: at the start of a paragraph, sentence,
// line or word (in that order of preference) that gives at least half the
// overlap, else at the earliest word start in the overlap. Without any, it
// begins at next, right after the chunk, or, when the chunk was cut inside a
// word longer than a chunk, exactly c.overlap runes before its end. eIdx is
// e's rune offset from s.
func (c *Chunker) nextStart(text string, s, e, eIdx, next int, gaps []chunkGap, cutMidWord bool) int {
	if c.overlap == 0 {
		return next
	}
	low, half := eIdx-c.overlap, eIdx-c.overlap/2
	first := [gapParagraph + 1]int{-1, -1, -1, -1, -1}
	late := -1
	for i := range gaps {
		g := &gaps[i]
		if g.end >= e {
			break
		}
		switch {
		case g.endIdx < low:
		case g.endIdx <= half:
			if first[g.kind] < 0 {
				first[g.kind] = i
			}
		case late < 0:
			late = i
		}
	}
	for k := gapParagraph; k >= gapWord; k-- {
		if first[k] >= 0 {
			return gaps[first[k]].end
		}
	}
	if late >= 0 {
		return gaps[late].end
	}
	if cutMidWord && low > 0 {
		return runeOffset(text, s, low)
	}
	return next
}

// runeOffset returns the byte offset of the n-th rune after s.
func runeOffset(text string, s, n int) int {
	p := s
	for ; n > 0 && p < len(text); n-- {
		_, size := decodeRuneAt(text, p)
		p += size
	}
	return p
}

func skipSpace(text string, p int) int {
	for p < len(text) {
		r, n := decodeRuneAt(text, p)
		if !isSpaceRune(r) {
			break
		}
		p += n
	}
	return p
}

func decodeRuneAt(text string, p int) (rune, int) {
	if b := text[p]; b < utf8.RuneSelf {
		return rune(b), 1
	}
	return utf8.DecodeRuneInString(text[p:])
}

// isSpaceRune is unicode.IsSpace, the definition strings.TrimSpace uses, with
// a fast path for ASCII.
func isSpaceRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || '\t' <= r && r <= '\r'
	}
	return unicode.IsSpace(r)
}

// isCloser reports closing quotes and brackets, which may follow the end of a
// sentence.
func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '}', '”', '’', '»', '」', '』', '）':
		return true
	}
	return false
}

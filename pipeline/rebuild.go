package pipeline

import (
	"strings"
	"unicode/utf8"
)

// Rebuild returns the text that c.Split cut into chunks, as far as the chunks
// hold it: a reindex that changes the chunking re-chunks documents from their
// stored chunks, which are all it has of them.
//
// Where chunk i+1 began depends only on chunk i's own text and c's size and
// overlap (Split's nextStart), so the overlap is recomputed from chunk i and
// checked against chunk i+1's start; when they overlap, the junction is exact
// and Rebuild(c.Split(t)) == strings.TrimSpace(t).
//
// When chunk i+1 does not overlap chunk i, the whitespace between them was
// not stored; it is restored as the weakest separator Split's choice of
// chunk i's end allows: a blank line ("\n\n") when chunk i holds a
// paragraph break where it could have ended (its end is then one too), a line
// break ("\n") likewise for a line break, nothing after a CJK full stop or
// where a word longer than a chunk was cut, else one space.
//
// chunks must come from c.Split, in order; Rebuild of other chunkings joins
// them with such separators all the same.
func (c *Chunker) Rebuild(chunks []string) string {
	switch len(chunks) {
	case 0:
		return ""
	case 1:
		return chunks[0]
	}
	n := 0
	for _, ch := range chunks {
		n += len(ch) + 2
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(chunks[0])
	var gaps []chunkGap
	for i := 1; i < len(chunks); i++ {
		prev, next := chunks[i-1], chunks[i]
		var ov, sep string
		ov, sep, gaps = c.junction(prev, gaps[:0])
		if ov != "" && strings.HasPrefix(next, ov) {
			b.WriteString(next[len(ov):])
			continue
		}
		b.WriteString(sep)
		b.WriteString(next)
	}
	return b.String()
}

// junction returns the end of chunk that Split repeated at the start of the
// next chunk ("" when it repeated none), and the separator that stands for the
// unstored whitespace when the next chunk does not overlap chunk.
// gaps is scratch space, returned for reuse.
func (c *Chunker) junction(chunk string, gaps []chunkGap) (overlap, sep string, _ []chunkGap) {
	_, gaps, _ = c.scan(chunk, 0, gaps)
	runes := utf8.RuneCountInString(chunk)
	// A chunk Split ended at a window's end inside a word has size runes and
	// no gap; one ended at a gap has that gap after it, in the window, and
	// nextStart then finds no gap before the end to start the next chunk at.
	cutMidWord := len(gaps) == 0 && runes == c.size
	ns := c.nextStart(chunk, 0, len(chunk), runes, len(chunk), gaps, cutMidWord)
	ns = skipSpace(chunk, ns)
	overlap = chunk[ns:]

	// pickEnd chose the end among the gaps leaving the chunk at least
	// minLen runes: of the strongest kind, so at least as strong as any of
	// them inside the chunk.
	minLen := max(c.size/2, c.overlap+1)
	var kind gapKind
	for i := range gaps {
		if gaps[i].startIdx >= minLen && gaps[i].start < len(chunk) {
			kind = max(kind, gaps[i].kind)
		}
	}
	switch {
	case kind == gapParagraph:
		sep = "\n\n"
	case kind == gapLine:
		sep = "\n"
	case cutMidWord || endsCJKSentence(chunk):
		sep = ""
	default:
		sep = " "
	}
	return overlap, sep, gaps
}

// endsCJKSentence reports whether text ends with a CJK full stop, possibly
// followed by closers: a place Split may end a chunk at without whitespace.
func endsCJKSentence(text string) bool {
	for text != "" {
		r, n := utf8.DecodeLastRuneInString(text)
		switch {
		case r == '。' || r == '！' || r == '？' || r == '｡':
			return true
		case isCloser(r):
			text = text[:len(text)-n]
		default:
			return false
		}
	}
	return false
}

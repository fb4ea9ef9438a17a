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
// Each such separator is then checked by splitting the text around it
// again: when that does not give back the chunks on either side, the
// junction takes the first of "\n\n", "\n", " ", "" (and a few runs of
// indentation) that does, so that a
// document whose chunking is unchanged keeps its chunks whenever one of
// them allows it.
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
	parts := make([]string, 2*len(chunks)-1) // chunk or its new part, separator, ...
	parts[0] = chunks[0]
	var free []int // indexes in parts of separators of junctions without overlap
	var gaps []chunkGap
	for i := 1; i < len(chunks); i++ {
		prev, next := chunks[i-1], chunks[i]
		var ov, sep string
		ov, sep, gaps = c.junction(prev, gaps[:0])
		if ov != "" && strings.HasPrefix(next, ov) {
			parts[2*i] = next[len(ov):]
			continue
		}
		parts[2*i-1], parts[2*i] = sep, next
		free = append(free, 2*i-1)
	}
	for _, k := range free {
		if c.splitsBack(chunks, parts, k, parts[k]) {
			continue
		}
		for _, sep := range separators {
			if c.splitsBack(chunks, parts, k, sep) {
				parts[k] = sep
				break
			}
		}
	}
	return strings.Join(parts, "")
}

// separators are the whitespace Rebuild tries at a junction without overlap
// whose first guess does not split back: blank lines, line breaks (either
// followed by the indentation of code and lists), a space, nothing.
var separators = [...]string{"\n\n", "\n", " ", "", "\n\n    ", "\n\n\t", "\n    ", "\n\t", "  "}

// splitsBack reports whether, with sep at parts[k] (the junction of chunks
// i-1 and i, k = 2i-1), the text from chunk i-1 on (to a chunk's size past
// its end, all Split reads to end it) splits into chunk i-1 first; and, at
// the last junction, into chunk i then. Where chunk i begins follows from
// chunk i-1 alone.
func (c *Chunker) splitsBack(chunks, parts []string, k int, sep string) bool {
	i := (k + 1) / 2
	var b strings.Builder
	b.WriteString(chunks[i-1])
	b.WriteString(sep)
	for _, p := range parts[k+1 : min(k+4, len(parts))] {
		b.WriteString(p)
	}
	got := c.Split(b.String())
	if i == len(chunks)-1 {
		return len(got) == 2 && got[0] == chunks[i-1] && got[1] == chunks[i]
	}
	return len(got) >= 2 && got[0] == chunks[i-1]
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

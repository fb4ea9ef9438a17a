package pipeline

import (
	"strings"
	"unicode/utf8"
)

// Chunker.Split as it was before its fast paths (a text that fits in one
// chunk, runs of plain ASCII): the reference the identity tests hold the
// current one to. It shares the unchanged gap choice (pickEnd, nextStart).

func refSplit(c *Chunker, text string) []string {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil
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
		w, gaps1, whole := refScan(c, text, s, gaps[:0])
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

func refScan(c *Chunker, text string, s int, gaps []chunkGap) (w int, _ []chunkGap, whole bool) {
	size := c.size
	p, idx := s, 0
	sentEnd := false // the last non-space rune ends a sentence
	for p < len(text) {
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

package builtin

import (
	"strings"
	"unicode/utf16"

	"golang.org/x/text/unicode/norm"
)

// tokenizer splits text into the model's SentencePiece pieces exactly as the
// reference runtime does (Tokenizer.encode of @energetic-ai/embeddings, the
// TF.js Universal Sentence Encoder tokenizer): NFKC, "▁" for every space and
// in front, then the highest-scoring segmentation by dynamic programming
// over the pieces that match at each position. A character no piece starts
// with is the unknown piece 0 with score 0; runs of unknown pieces collapse
// into one.
type tokenizer struct {
	root trieNode
	// units is, per piece id, its length in UTF-16 code units, which the
	// reference uses to step back through the best path.
	units []int
}

// reservedPieces are the control pieces (unknown, <s>, </s>, extras) that
// never match text.
const reservedPieces = 6

type trieNode struct {
	children map[rune]*trieNode
	// end marks a node that completes a piece: id, its score and its length
	// in characters.
	end   bool
	id    int
	score float64
	chars int
}

func newTokenizer(pieces []string, scores []float64) *tokenizer {
	t := &tokenizer{units: make([]int, len(pieces))}
	for id, p := range pieces {
		t.units[id] = len(utf16.Encode([]rune(p)))
		if id < reservedPieces {
			continue
		}
		n := &t.root
		chars := 0
		for _, r := range p {
			if n.children == nil {
				n.children = make(map[rune]*trieNode)
			}
			next := n.children[r]
			if next == nil {
				next = &trieNode{}
				n.children[r] = next
			}
			n = next
			chars++
		}
		if chars > 0 { // a later duplicate replaces an earlier piece, as in the reference
			n.end, n.id, n.score, n.chars = true, id, scores[id], chars
		}
	}
	return t
}

// encode returns the piece ids of text.
func (t *tokenizer) encode(text string) []int {
	text = norm.NFKC.String(text)
	if text == "" {
		return nil
	}
	symbols := []rune("▁" + strings.ReplaceAll(text, " ", "▁"))
	n := len(symbols)
	// best[e] and words[e] are the score and the last piece of the best
	// segmentation of symbols[:e]; a zero score means none yet, as in the
	// reference, so a later candidate always replaces it.
	best := make([]float64, n+1)
	words := make([]int, n+1)
	type cand struct {
		start, id, chars int
		score            float64
	}
	// The reference visits end positions in order, and at each end the
	// start positions in order; starts ascend naturally if candidates are
	// generated start by start and bucketed by end.
	byEnd := make([][]cand, n+1)
	for i := range n {
		node := t.root.children[symbols[i]]
		found := false
		for j := i; node != nil; j++ {
			if node.end {
				byEnd[i+node.chars] = append(byEnd[i+node.chars], cand{i, node.id, node.chars, node.score})
				found = true
			}
			if j+1 >= n {
				break
			}
			node = node.children[symbols[j+1]]
		}
		if !found {
			byEnd[i+1] = append(byEnd[i+1], cand{i, 0, 1, 0})
		}
	}
	for e := 0; e <= n; e++ {
		for _, c := range byEnd[e] {
			s := c.score + best[e-c.chars]
			if best[e] == 0 || s >= best[e] {
				best[e] = s
				words[e] = c.id
			}
		}
	}
	var rev []int
	for i := n; i > 0; i -= t.units[words[i]] {
		rev = append(rev, words[i])
	}
	ids := make([]int, 0, len(rev))
	prevUnknown := false
	for _, id := range rev {
		if !(prevUnknown && id == 0) {
			ids = append(ids, id)
		}
		prevUnknown = id == 0
	}
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	return ids
}

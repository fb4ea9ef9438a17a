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
	// Every piece matching at each start, starts ascending; a character no
	// piece starts with is the unknown piece.
	type cand struct {
		end, id, chars int32
		score          float64
	}
	cands := make([]cand, 0, 4*n)
	for i := range n {
		node := t.root.children[symbols[i]]
		found := false
		for j := i; node != nil; j++ {
			if node.end {
				cands = append(cands, cand{int32(i + node.chars), int32(node.id), int32(node.chars), node.score})
				found = true
			}
			if j+1 >= n {
				break
			}
			node = node.children[symbols[j+1]]
		}
		if !found {
			cands = append(cands, cand{int32(i + 1), 0, 1, 0})
		}
	}
	// The reference visits end positions in order, and at each end the
	// start positions in order: a stable counting sort by end gives that
	// order.
	first := make([]int32, n+2)
	for _, c := range cands {
		first[c.end+1]++
	}
	for e := 1; e <= n+1; e++ {
		first[e] += first[e-1]
	}
	order := make([]int32, len(cands))
	next := append([]int32(nil), first[:n+1]...)
	for i, c := range cands {
		order[next[c.end]] = int32(i)
		next[c.end]++
	}
	// best[e] and words[e] are the score and the last piece of the best
	// segmentation of symbols[:e]; a zero score means none yet, as in the
	// reference, so a later candidate always replaces it.
	best := make([]float64, n+1)
	words := make([]int, n+1)
	for _, i := range order {
		c := &cands[i]
		sc := c.score + best[c.end-c.chars]
		if best[c.end] == 0 || sc >= best[c.end] {
			best[c.end] = sc
			words[c.end] = int(c.id)
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

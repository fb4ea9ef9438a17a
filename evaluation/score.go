package evaluation

import (
	"slices"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Scores are the figures of one configuration over a set of questions. A
// question's rank is the position, from 1, of the first document answering
// it among the distinct documents of its hits, in the order of their best
// chunk; it has none (0) when no hit answers it.
type Scores struct {
	Questions int     `json:"questions"`
	Hit1      float64 `json:"hit_at_1"`  // share of questions of rank 1
	Hit5      float64 `json:"hit_at_5"`  // share of rank 1-5
	Hit10     float64 `json:"hit_at_10"` // share of rank 1-10
	MRR       float64 `json:"mrr"`       // mean of 1/rank, 0 for no rank
}

// DistinctDocs returns the documents of hits, ranked best first, in the
// order of their first hit.
func DistinctDocs(hits []pipeline.Hit) []string {
	docs := make([]string, 0, len(hits))
	for _, h := range hits {
		if !slices.Contains(docs, h.DocID) {
			docs = append(docs, h.DocID)
		}
	}
	return docs
}

// Rank returns the position, from 1, of the first of docs that is one of
// answers, or 0 when none is.
func Rank(docs, answers []string) int {
	for i, d := range docs {
		if slices.Contains(answers, d) {
			return i + 1
		}
	}
	return 0
}

// Score computes the figures of questions of the given ranks.
func Score(ranks []int) Scores {
	s := Scores{Questions: len(ranks)}
	if len(ranks) == 0 {
		return s
	}
	for _, r := range ranks {
		if r < 1 {
			continue
		}
		s.MRR += 1 / float64(r)
		if r <= 1 {
			s.Hit1++
		}
		if r <= 5 {
			s.Hit5++
		}
		if r <= 10 {
			s.Hit10++
		}
	}
	n := float64(len(ranks))
	s.Hit1, s.Hit5, s.Hit10, s.MRR = s.Hit1/n, s.Hit5/n, s.Hit10/n, s.MRR/n
	return s
}

package evaluation_test

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/evaluation"
	"github.com/ragpipe/ragpipe/pipeline"
)

func TestScoring(t *testing.T) {
	hits := []pipeline.Hit{{DocID: "a"}, {DocID: "a"}, {DocID: "b"}, {DocID: "c"}, {DocID: "b"}, {DocID: "d"}}
	docs := evaluation.DistinctDocs(hits)
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(docs, want) {
		t.Fatalf("DistinctDocs = %v, want %v", docs, want)
	}
	for _, c := range []struct {
		answers []string
		want    int
	}{
		{[]string{"a"}, 1},
		{[]string{"c"}, 3},
		{[]string{"d", "b"}, 2}, // the first answer found counts
		{[]string{"x"}, 0},
	} {
		if got := evaluation.Rank(docs, c.answers); got != c.want {
			t.Errorf("Rank(%v, %v) = %d, want %d", docs, c.answers, got, c.want)
		}
	}

	// Ranks on both sides of each cut: 1 and 5 are in the top 5, 6 is not;
	// 10 is in the top 10, 11 is not; 0 is no rank.
	got := evaluation.Score([]int{1, 5, 0, 6, 10, 11})
	want := evaluation.Scores{Questions: 6, Hit1: 1.0 / 6, Hit5: 2.0 / 6, Hit10: 4.0 / 6, MRR: (1 + 1.0/5 + 1.0/6 + 1.0/10 + 1.0/11) / 6}
	if got.Questions != want.Questions || !near(got.Hit1, want.Hit1) || !near(got.Hit5, want.Hit5) ||
		!near(got.Hit10, want.Hit10) || !near(got.MRR, want.MRR) {
		t.Errorf("Score = %+v, want %+v", got, want)
	}
	if got := evaluation.Score(nil); got != (evaluation.Scores{}) {
		t.Errorf("Score(nil) = %+v, want zeros", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestData checks the questions against the corpus: as many of each kind,
// at least 120, and every answering document in the corpus.
func TestData(t *testing.T) {
	docs, err := evaluation.Corpus()
	if err != nil {
		t.Fatal(err)
	}
	qs, err := evaluation.Questions()
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool)
	for _, d := range docs {
		ids[d.ID] = true
	}
	kinds := make(map[evaluation.Kind]int)
	for _, q := range qs {
		kinds[q.Kind]++
		for _, d := range q.Docs {
			if !ids[d] {
				t.Errorf("question %s: document %q is not in the corpus", q.ID, d)
			}
		}
	}
	if len(qs) < 120 || kinds[evaluation.Keyword] != kinds[evaluation.Paraphrase] {
		t.Errorf("%d questions, %v; want at least 120, as many of each kind", len(qs), kinds)
	}
	if len(docs) < 60 || !ids["encoding/json"] {
		t.Errorf("%d documents, encoding/json %v; want at least 60, encoding/json among them", len(docs), ids["encoding/json"])
	}
}

// TestTiny runs the whole evaluation on a hand-made corpus where the
// answers are certain.
func TestTiny(t *testing.T) {
	corpus := []evaluation.Document{
		{ID: "cats", Text: strings.Repeat("Cats purr and chase mice around the barn. ", 60)},
		{ID: "boats", Text: strings.Repeat("Sailing boats need wind, a keel and a rudder. ", 60)},
		{ID: "bread", Text: strings.Repeat("Bread dough rises with yeast before baking in the oven. ", 60)},
	}
	questions := []evaluation.Question{
		{ID: "k1", Kind: evaluation.Keyword, Text: "yeast dough baking", Docs: []string{"bread"}},
		{ID: "k2", Kind: evaluation.Keyword, Text: "keel and rudder of sailing boats", Docs: []string{"boats"}},
		{ID: "p1", Kind: evaluation.Paraphrase, Text: "purr", Docs: []string{"cats", "boats"}},
		{ID: "p2", Kind: evaluation.Paraphrase, Text: "chase mice", Docs: []string{"nowhere"}},
	}
	modes := []evaluation.Setup{
		{Name: "dense", Embedder: "hash", Mode: pipeline.ModeDense},
		{Name: "keyword", Embedder: "hash", Mode: pipeline.ModeKeyword},
		{Name: "hybrid", Embedder: "hash", Mode: pipeline.ModeHybrid},
	}
	r := run(t, evaluation.Config{Corpus: corpus, Questions: questions, Setups: modes})
	if len(r.Ingests) != 1 || r.Ingests[0].Chunks < 6 {
		t.Errorf("ingests %+v; want one of at least 6 chunks", r.Ingests)
	}
	wantRanks := map[string]int{"k1": 1, "k2": 1, "p1": 1, "p2": 0}
	for _, res := range r.Results {
		for _, a := range res.Answers {
			if a.Rank != wantRanks[a.Question] || res.Setup.Mode == pipeline.ModeDense && len(a.Docs) != 3 {
				t.Errorf("%s, question %s: rank %d, documents %v; want rank %d", res.Setup.Name, a.Question, a.Rank, a.Docs, wantRanks[a.Question])
			}
		}
		if res.Keyword.Hit1 != 1 || res.Paraphrase.Hit1 != 0.5 || res.All.MRR != 0.75 {
			t.Errorf("%s: all %+v, keyword %+v, paraphrase %+v; want keyword hit@1 1, paraphrase 0.5, MRR 0.75",
				res.Setup.Name, res.All, res.Keyword, res.Paraphrase)
		}
	}
}

// TestSlice evaluates 20 of the questions, ten of each kind, on the whole
// corpus, and checks the report against its answers.
func TestSlice(t *testing.T) {
	qs, err := evaluation.Questions()
	if err != nil {
		t.Fatal(err)
	}
	var slice []evaluation.Question
	for _, kind := range []evaluation.Kind{evaluation.Keyword, evaluation.Paraphrase} {
		i := slices.IndexFunc(qs, func(q evaluation.Question) bool { return q.Kind == kind })
		slice = append(slice, qs[i:i+10]...)
	}
	keyword := evaluation.Setup{Name: "keyword", Embedder: "hash", Mode: pipeline.ModeKeyword}
	r := run(t, evaluation.Config{Questions: slice, Setups: append(setups("hash", "builtin"), keyword)})
	if len(r.Results) != 3 || r.Results[1].Error != "not available: not wired in the test" {
		t.Fatalf("results %+v; want hash, builtin and keyword, builtin not available", r.Results)
	}
	for _, res := range []evaluation.Result{r.Results[0], r.Results[2]} {
		if res.Error != "" || len(res.Answers) != 20 {
			t.Fatalf("%s: %d answers, error %q", res.Setup.Name, len(res.Answers), res.Error)
		}
		var ranks []int
		for _, a := range res.Answers {
			ranks = append(ranks, a.Rank)
		}
		if got := evaluation.Score(ranks); got != res.All {
			t.Errorf("%s: reported %+v, the answers score %+v", res.Setup.Name, res.All, got)
		}
		// The keyword questions name identifiers found in one document only.
		if res.Keyword.Hit5 < 0.8 {
			t.Errorf("%s: keyword hit@5 %.2f; want at least 0.8", res.Setup.Name, res.Keyword.Hit5)
		}
	}
	var table, js bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "| keyword | ") || !strings.Contains(table.String(), "| builtin | not available") {
		t.Errorf("table lacks keyword or builtin:\n%s", table.String())
	}
	if err := r.WriteJSON(&js); err != nil || !json.Valid(js.Bytes()) {
		t.Errorf("JSON report: %v\n%s", err, js.String())
	}
}

// setups returns the dense setups of the embedders named.
func setups(names ...string) []evaluation.Setup {
	var out []evaluation.Setup
	for _, n := range names {
		out = append(out, evaluation.Setup{Name: n, Embedder: n, Mode: pipeline.ModeDense})
	}
	return out
}

// run runs the evaluation with the hash embedder and a temporary store.
func run(t *testing.T, cfg evaluation.Config) *evaluation.Report {
	t.Helper()
	hash, err := embedder.NewHash(1024)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Embedders = map[string]evaluation.Embedder{"hash": hash}
	cfg.Missing = map[string]string{"builtin": "not wired in the test"}
	cfg.Dir = t.TempDir()
	r, err := evaluation.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

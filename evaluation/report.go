package evaluation

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is what Run measured.
type Report struct {
	Documents    int          `json:"documents"`
	Questions    map[Kind]int `json:"questions"` // by kind
	TopChunks    int          `json:"top_chunks"`
	ChunkSize    int          `json:"chunk_size"`
	ChunkOverlap int          `json:"chunk_overlap"`
	Ingests      []Ingest     `json:"ingests"` // one per embedder
	Results      []Result     `json:"results"` // one per setup
}

// Ingest is the ingestion of the corpus with one embedder.
type Ingest struct {
	Embedder string  `json:"embedder"`
	Chunks   int     `json:"chunks"`
	Embed    Seconds `json:"embed_seconds"` // chunking and embedding
	Took     Seconds `json:"seconds"`       // the same and the store's writes
	// Error says why the embedder's setups have no figures: "not available"
	// (and why) or how the ingestion failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// Result is the outcome of one setup.
type Result struct {
	Setup      Setup  `json:"setup"`
	All        Scores `json:"all"`
	Keyword    Scores `json:"keyword"`
	Paraphrase Scores `json:"paraphrase"`
	// Search is the time all questions took, embedding them included, with
	// Config.Parallelism searches at a time.
	Search  Seconds  `json:"search_seconds"`
	Answers []Answer `json:"answers"`
	// Error says why the setup has no figures: its embedder is not
	// available, or a step failed. Empty when it has them.
	Error string `json:"error,omitempty"`
}

// Answer is how a setup answered one question.
type Answer struct {
	Question string   `json:"question"`
	Kind     Kind     `json:"kind"`
	Rank     int      `json:"rank"` // see Scores; 0 for none
	Docs     []string `json:"docs"` // the first 10 distinct documents found
}

// Seconds is a duration that JSON carries as seconds.
type Seconds time.Duration

// MarshalJSON writes s in seconds, to the millisecond.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Round(time.Millisecond).Seconds(), 'f', -1, 64), nil
}

// String rounds s to the millisecond, or to the microsecond below 10 ms.
func (s Seconds) String() string {
	d := time.Duration(s)
	if d < 10*time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as markdown tables: the figures of every setup over
// all questions, the paraphrases and the keyword questions, then the times.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	all := r.Questions[Keyword] + r.Questions[Paraphrase]
	fmt.Fprintf(&b, "%d documents, %d questions (%d keyword, %d paraphrase); documents ranked by their best chunk among the top %d, chunks of %d characters overlapping by %d.\n",
		r.Documents, all, r.Questions[Keyword], r.Questions[Paraphrase], r.TopChunks, r.ChunkSize, r.ChunkOverlap)
	b.WriteString("\n| setup | hit@5 | hit@5 paraphrase | hit@5 keyword | hit@1 | hit@10 | MRR | MRR paraphrase | MRR keyword |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | | | | | | | |\n", res.Setup.Name, res.Error)
			continue
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f | %.3f | %.3f |\n", res.Setup.Name,
			res.All.Hit5, res.Paraphrase.Hit5, res.Keyword.Hit5, res.All.Hit1, res.All.Hit10,
			res.All.MRR, res.Paraphrase.MRR, res.Keyword.MRR)
	}
	b.WriteString("\n| setup | search (all questions) | per question |\n|---|---|---|\n")
	for _, res := range r.Results {
		if res.Error == "" {
			per := time.Duration(res.Search) / time.Duration(max(len(res.Answers), 1))
			fmt.Fprintf(&b, "| %s | %s | %s |\n", res.Setup.Name, res.Search, Seconds(per))
		}
	}
	b.WriteString("\n| embedder | chunks | embedding | embedding and writing |\n|---|---|---|---|\n")
	for _, ing := range r.Ingests {
		if ing.Error == "" {
			fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", ing.Embedder, ing.Chunks, ing.Embed, ing.Took)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMisses writes, for each setup, the questions whose answering
// documents are not among the first k documents found, with what was found
// instead.
func (r *Report) WriteMisses(w io.Writer, questions []Question, k int) error {
	text := make(map[string]Question, len(questions))
	for _, q := range questions {
		text[q.ID] = q
	}
	var b strings.Builder
	for _, res := range r.Results {
		if res.Error != "" {
			continue
		}
		miss := missed(res, k)
		fmt.Fprintf(&b, "\n%s: %d questions not answered in the first %d documents\n", res.Setup.Name, len(miss), k)
		for _, a := range miss {
			q := text[a.Question]
			rank := "none"
			if a.Rank > 0 {
				rank = strconv.Itoa(a.Rank)
			}
			fmt.Fprintf(&b, "  %s (rank %s) %s\n      want %s, found %s\n", a.Question, rank, q.Text,
				strings.Join(q.Docs, " "), strings.Join(a.Docs[:min(len(a.Docs), k)], " "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

package evaluation

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// data is the evaluation's corpus and questions; testdata/README.md says
// where they come from and under which licence.
//
//go:embed testdata/corpus testdata/questions.jsonl
var data embed.FS

// Document is one document of the corpus.
type Document struct {
	ID   string // its doc_id: the Go import path of the package it documents
	Text string
}

// Kind tells how a question is worded.
type Kind string

// The kinds of questions.
const (
	// Keyword questions use the answer's own terms, identifiers and names.
	Keyword Kind = "keyword"
	// Paraphrase questions avoid the answer's distinctive words, as asked by
	// someone who does not know its vocabulary.
	Paraphrase Kind = "paraphrase"
)

// Question is one question of the evaluation and the documents answering it.
type Question struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	Text string `json:"question"`
	// Docs are the ids of the documents that answer it; finding any one of
	// them is a hit.
	Docs []string `json:"docs"`
}

// Corpus returns the documents of the evaluation, ordered by id.
func Corpus() ([]Document, error) {
	const root = "testdata/corpus"
	var docs []Document
	err := fs.WalkDir(data, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".txt" {
			return err
		}
		b, err := data.ReadFile(p)
		if err != nil {
			return err
		}
		id := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".txt")
		docs = append(docs, Document{ID: id, Text: string(b)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evaluation corpus: %w", err)
	}
	slices.SortFunc(docs, func(a, b Document) int { return strings.Compare(a.ID, b.ID) })
	return docs, nil
}

// Questions returns the questions of the evaluation, in their file's order:
// the keyword questions, then the paraphrases.
func Questions() ([]Question, error) {
	b, err := data.ReadFile("testdata/questions.jsonl")
	if err != nil {
		return nil, fmt.Errorf("evaluation questions: %w", err)
	}
	return parseQuestions(b)
}

// parseQuestions reads one JSON question a line and checks each.
func parseQuestions(b []byte) ([]Question, error) {
	var qs []Question
	seen := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var q Question
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			return nil, fmt.Errorf("evaluation questions, line %d: %w", line, err)
		}
		switch {
		case q.ID == "" || seen[q.ID]:
			return nil, fmt.Errorf("evaluation questions, line %d: missing or repeated id %q", line, q.ID)
		case q.Kind != Keyword && q.Kind != Paraphrase:
			return nil, fmt.Errorf("evaluation questions, line %d: kind %q, want %s or %s", line, q.Kind, Keyword, Paraphrase)
		case q.Text == "" || len(q.Docs) == 0:
			return nil, fmt.Errorf("evaluation questions, line %d: a question needs its text and the documents answering it", line)
		}
		seen[q.ID] = true
		qs = append(qs, q)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("evaluation questions: %w", err)
	}
	return qs, nil
}

package pipeline_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

func TestErrorMarks(t *testing.T) {
	cause := errors.New("401 Unauthorized")
	for _, tt := range []struct {
		name string
		mark func(error) error
		is   func(error) bool
		not  func(error) bool
	}{
		{"permanent", pipeline.Permanent, pipeline.IsPermanent, pipeline.IsMisconfigured},
		{"misconfigured", pipeline.Misconfigured, pipeline.IsMisconfigured, pipeline.IsPermanent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mark(nil) != nil {
				t.Error("marking nil is not nil")
			}
			err := fmt.Errorf("embed 3 chunks: %w", tt.mark(cause))
			if !tt.is(err) || tt.not(err) || !errors.Is(err, cause) {
				t.Errorf("%v: marked %v, other mark %v, cause kept %v", err, tt.is(err), tt.not(err), errors.Is(err, cause))
			}
			if err.Error() != "embed 3 chunks: 401 Unauthorized" {
				t.Errorf("message changed: %q", err)
			}
			if tt.is(cause) {
				t.Error("an unmarked error is marked")
			}
		})
	}
}

func TestItemErrors(t *testing.T) {
	bad := pipeline.Permanent(errors.New("invalid id"))
	down := errors.New("unavailable")
	batch := &pipeline.BatchError{Op: "apply", Collection: "docs", Errs: []error{nil, bad, nil}}
	for _, tt := range []struct {
		name string
		err  error
		want []error
	}{
		{"success", nil, []error{nil, nil, nil}},
		{"one error for all", down, []error{down, down, down}},
		{"per item", fmt.Errorf("write: %w", batch), []error{nil, bad, nil}},
		{"per item, other count", &pipeline.BatchError{Errs: []error{bad}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := pipeline.ItemErrors(tt.err, 3)
			if tt.want == nil {
				tt.want = []error{tt.err, tt.err, tt.err}
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("item %d: %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTextHash(t *testing.T) {
	a := pipeline.TextHash("openai/text-embedding-3-small", "some text")
	for name, other := range map[string]string{
		"other text":  pipeline.TextHash("openai/text-embedding-3-small", "some text!"),
		"other model": pipeline.TextHash("openai/text-embedding-3-large", "some text"),
		"shifted":     pipeline.TextHash("openai/text-embedding-3-small s", "ome text"),
	} {
		if other == a {
			t.Errorf("%s: same hash", name)
		}
	}
	if a != pipeline.TextHash("openai/text-embedding-3-small", "some text") || len(a) != 64 {
		t.Errorf("hash %q is not stable or not hex SHA-256", a)
	}
}

func ExampleTextHash() {
	// Stored with each chunk: an updated document's chunk with the same hash
	// reuses the stored vector instead of being embedded again.
	fmt.Println(pipeline.TextHash("ollama/nomic-embed-text", "Backups are kept for 14 days."))
	// Output:
	// 535dba187b0f0df34c356930650d531cb913342ebfb9ed1b10a90cbb166944aa
}

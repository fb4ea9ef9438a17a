package pipeline_test

import (
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

func TestValidUserID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"alice", true},
		{"Alice_01-x", true},
		{"a", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"al.ice", false},
		{"al ice", false},
		{"al*", false},
		{"al>", false},
		{"élise", false},
		{"a/b", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := pipeline.ValidUserID(tc.in); got != tc.want {
				t.Errorf("ValidUserID(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidCollection(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"documents", true},
		{"a", true},
		{"docs_v2-eu", true},
		{"d" + strings.Repeat("0", 63), true},
		{"d" + strings.Repeat("0", 64), false},
		{"", false},
		{"Docs", false},
		{"dOcs", false},
		{"1docs", false},
		{"_docs", false},
		{"-docs", false},
		{"do.cs", false},
		{"do cs", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := pipeline.ValidCollection(tc.in); got != tc.want {
				t.Errorf("ValidCollection(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, kind, subject string
		user, coll                  string
		ok                          bool
	}{
		{"valid", "rag", "ingest", "rag.ingest.alice.docs", "alice", "docs", true},
		{"dotted prefix", "acme.rag", "ingest", "acme.rag.ingest.Bob-1.docs_2", "Bob-1", "docs_2", true},
		{"other kind", "rag", "search", "rag.search.alice.docs", "alice", "docs", true},
		{"wrong kind", "rag", "ingest", "rag.search.alice.docs", "", "", false},
		{"wrong prefix", "rag", "ingest", "rags.ingest.alice.docs", "", "", false},
		{"prefix only partly", "acme.rag", "ingest", "rag.ingest.alice.docs", "", "", false},
		{"missing collection", "rag", "ingest", "rag.ingest.alice", "", "", false},
		{"empty collection", "rag", "ingest", "rag.ingest.alice.", "", "", false},
		{"empty user", "rag", "ingest", "rag.ingest..docs", "", "", false},
		{"missing both", "rag", "ingest", "rag.ingest", "", "", false},
		{"missing both with dot", "rag", "ingest", "rag.ingest.", "", "", false},
		{"extra token", "rag", "ingest", "rag.ingest.alice.docs.more", "", "", false},
		{"invalid user", "rag", "ingest", "rag.ingest.al*ce.docs", "", "", false},
		{"invalid collection", "rag", "ingest", "rag.ingest.alice.Docs", "", "", false},
		{"collection starting with a digit", "rag", "ingest", "rag.ingest.alice.9docs", "", "", false},
		{"empty", "rag", "ingest", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, coll, ok := pipeline.ParseSubject(tc.prefix, tc.kind, tc.subject)
			if user != tc.user || coll != tc.coll || ok != tc.ok {
				t.Errorf("ParseSubject(%q, %q, %q) = %q, %q, %v; want %q, %q, %v",
					tc.prefix, tc.kind, tc.subject, user, coll, ok, tc.user, tc.coll, tc.ok)
			}
		})
	}
}

func BenchmarkParseSubject(b *testing.B) {
	for b.Loop() {
		if _, _, ok := pipeline.ParseSubject("acme.rag", "ingest", "acme.rag.ingest.tenant-0042.documents"); !ok {
			b.Fatal("not ok")
		}
	}
}

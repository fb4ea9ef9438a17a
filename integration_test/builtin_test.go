package integration_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/internal/natstest"
)

// TestBuiltinFindsMeaning runs `ragpipe dev` with its default settings (the
// builtin embedder, no network), publishes examples/corpus and asks a
// question that shares no word with its answer: a dense search must find the
// March cost-review chat among the first five documents. The rank in the
// default mode (hybrid, which fuses in keyword matches) is logged.
func TestBuiltinFindsMeaning(t *testing.T) {
	corpus, err := filepath.Abs("../examples/corpus")
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	s := &system{t: t, defaultEmbedder: true, env: []string{"NATS_URL=" + url, "QDRANT_URL=", "RAGPIPE_HTTP_ADDR=127.0.0.1:0"}}
	dev := s.start("dev", t.TempDir(), []string{"dev"})
	waitLogged(t, dev, "worker consuming")
	if code, out := run(t, []string{"NATS_URL=" + url}, "publish", "--user", "alice", "--collection", "documents", "--wait", corpus); code != 0 {
		t.Fatalf("publish: exit %d:\n%s", code, out)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	const question, answer = "who talked about being short on money for the cloud bill", "chat/2026-03-15-cost-review.txt"
	for _, mode := range []string{"dense", ""} {
		body, _ := json.Marshal(map[string]any{"query": question, "top_k": 30, "mode": mode})
		msg, err := nc.Request("rag.search.alice.documents", body, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var reply struct {
			Hits []struct {
				DocID string `json:"doc_id"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(msg.Data, &reply); err != nil || len(reply.Hits) == 0 {
			t.Fatalf("mode %q: reply %s (%v)", mode, msg.Data, err)
		}
		var docs []string // distinct, best first
		for _, h := range reply.Hits {
			if !slices.Contains(docs, h.DocID) {
				docs = append(docs, h.DocID)
			}
		}
		rank := slices.Index(docs, answer) + 1
		switch {
		case mode == "dense" && (rank < 1 || rank > 5):
			t.Errorf("dense search for %q: %s is not among the first 5 documents: %v", question, answer, docs)
		case mode == "":
			t.Logf("default mode: %s is document %d of %v", answer, rank, docs)
		}
	}
}

package integration_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// TestWorkerWaitsForQdrant starts a worker while Qdrant is down: it serves
// /healthz at once and /readyz 503 saying it is connecting to Qdrant,
// logging each attempt; once Qdrant is up it becomes ready and ingests.
func TestWorkerWaitsForQdrant(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine")
	s.qdrant.Stop(t)
	w := s.start("worker", "", []string{"worker"})
	base := "http://" + httpAddr(t, w)
	checkfor.Until(t, 30*time.Second, "/readyz naming Qdrant", func() error {
		return status(base+"/readyz", 503, "not ready\nstarting: connecting to Qdrant at ")
	})
	get(t, base+"/healthz", 200)
	get(t, base+"/metrics", 200)
	waitLogged(t, w, "qdrant not reachable yet")
	if got := get(t, base+"/readyz", 503); !strings.Contains(got, "starting: connecting to Qdrant") {
		t.Fatalf("/readyz while Qdrant is down: %q", got)
	}

	s.qdrant.Restart(t)
	waitLogged(t, w, "worker consuming")
	checkfor.Until(t, 30*time.Second, "/readyz ready", func() error { return status(base+"/readyz", 200, "ready") })
	var events []event
	for i := range 20 {
		events = append(events, event{user: "alice", collection: "docs", body: map[string]any{"doc_id": fmt.Sprint(i), "text": "text"}})
	}
	s.publish(events)
	s.waitDrained(time.Minute)
	if n := len(s.stored("docs")); n != 20 {
		t.Errorf("%d points stored after Qdrant came up, want 20", n)
	}
}

var eventsCollection = regexp.MustCompile(`(?m)^ragpipe_events_total\{collection="([^"]*)"`)

// TestWorkerMetricsBounded publishes events to 1,000 collections nobody
// configured, with RAGPIPE_MAX_COLLECTIONS=2: /metrics names the configured
// collection, at most the two created, and one value for all the others.
func TestWorkerMetricsBounded(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine", "RAGPIPE_MAX_COLLECTIONS=2")
	w := s.startWorker()
	base := "http://" + httpAddr(t, w)
	events := []event{{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d", "text": "text"}}}
	for i := range 1000 {
		events = append(events, event{user: "alice", collection: fmt.Sprint("c", i), body: map[string]any{"doc_id": "d", "text": "text"}})
	}
	s.publish(events)
	s.waitDrained(2 * time.Minute)
	values := map[string]bool{}
	for _, m := range eventsCollection.FindAllStringSubmatch(get(t, base+"/metrics", 200), -1) {
		values[m[1]] = true
	}
	t.Logf("collection label values of ragpipe_events_total: %v", values)
	if len(values) > 4 || !values["docs"] || !values["_other"] {
		t.Errorf("ragpipe_events_total has collection label values %v; want docs, _other and at most the 2 collections created", values)
	}
}

package integration_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/embedtest"
)

// TestReindexFailedCheck reindexes to a model with a shorter context than
// the serving one's: once the first tenant's documents are copied, three of
// them get new versions too long for it. Workers write them to the serving
// generation, the new model refuses them for the building one (without
// failing the events), so the check finds the versions differ: the reindex
// stops before the switch with a report naming the three documents and
// exits non-zero, nothing is switched, searches are answered all along,
// and --abort drops the building generation.
func TestReindexFailedCheck(t *testing.T) {
	fake := startReindexFake(t, embedtest.Config{MaxInputChars: 400})
	s := newSystem(t, append(reindexEnv(fake), "RAGPIPE_CHUNK_SIZE=1000", "RAGPIPE_CHUNK_OVERLAP=100",
		"RAGPIPE_EMBEDDER_SMALL_BATCH_SIZE=2")...)
	s.startWorker()
	s.startSearcher("searcher", nil)
	w := newWorkload(t, 500, 3)
	w.m = newModel(t, 1000, 100, oldDims)
	w.valid = func(txt string) bool { return len(txt) < 300 }
	w.initial(s)
	states := watchStates(t, s.js, "documents")
	stopSearches := searching(s.js.Conn(), 1)
	for range 1000 { // slow answers: the copy of the other tenants takes seconds
		fake.Fail(embedtest.Fault{Delay: 50 * time.Millisecond})
	}

	p := s.start("reindex", "", toSmall)
	// Tenants are copied in order: "Eve" first.
	first := len(w.texts) / len(users)
	states.wait(time.Minute, "Eve copied", func(s generation.State) error {
		if s.Job == nil || s.Job.Phase != generation.Copying || s.Job.Copied < int64(first) {
			return errNotYet
		}
		return nil
	})
	w.valid = func(txt string) bool { return len(txt) > 500 }
	var long []event
	var refused []string
	for _, i := range []int{4, 9, 14} {
		long = append(long, w.event(i, "upsert"))
		refused = append(refused, fmt.Sprint("Eve/doc-", i))
	}
	s.publish(long)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("reindex still running after 2 minutes")
	}
	out, code := p.log.String(), p.cmd.ProcessState.ExitCode()
	t.Logf("failed check: exit %d, output:\n%s", code, tail(out, 15))
	st := states.current()
	if st.Job == nil || st.Job.Phase != generation.Failed || st.Job.Report == nil {
		t.Fatalf("after the reindex: %s; want its job failed with a report", describeState(st))
	}
	if got := slices.Sorted(slices.Values(st.Job.Report.Mismatches)); !slices.Equal(got, slices.Sorted(slices.Values(refused))) {
		t.Errorf("report's mismatches %v, want %v", st.Job.Report.Mismatches, refused)
	}
	if code == 0 || !strings.Contains(out, refused[0]) || !strings.Contains(out, "nothing switched") {
		t.Errorf("ragpipe reindex exited %d; want non-zero, saying nothing switched and naming %s", code, refused[0])
	}
	if st.Serving.Name != "documents__g1" || st.Building == nil || st.Building.Name != "documents__g2" {
		t.Fatalf("after a failed check: %s; want documents__g1 serving, documents__g2 kept building", describeState(st))
	}
	s.waitDrained(time.Minute)
	s.assertQdrantServes("documents__g1")
	s.assertQdrantGeneration(w, "documents", oldDims, "")

	runToEnd(t, s, "reindex --abort", reindexCommand("--abort"))
	mustServe(t, states.current(), "documents__g1", "")
	s.assertQdrantServes("documents__g1", "documents__g2")
	assertSearches(t, "failed check and abort", stopSearches())
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none: the building generation's refusals must not fail events; first: %v", len(dl), dl[0].header)
	}
}

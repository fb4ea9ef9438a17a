package integration_test

import (
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/embedtest"
)

// TestReindexCluster reindexes `documents` on the three-node Qdrant cluster
// and a three-server JetStream cluster, from one layout (2 shards, one
// replica each) to another (3 shards, replication 2, by the command's
// --shards and --replication), while events and searches go on. The build
// runs with --no-switch, and the operator switches with --switch once the
// events pause, the searches still running: the new generation has the new
// layout and ends exact, no search fails, and --drop-previous deletes the
// old generation.
func TestReindexCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in -short mode")
	}
	// Six servers and four race-instrumented processes saturate the
	// machine, and on a saturated cluster Qdrant's alias switch holds up
	// requests until they time out: the ragpipe processes run without the
	// race detector.
	usePlainBinary(t)
	fake := startReindexFake(t, embedtest.Config{})
	s, _, _ := newCluster(t, append(reindexEnv(fake), "RAGPIPE_SHARDS=2", "RAGPIPE_REPLICATION_FACTOR=1")...)
	s.startWorker()
	s.startWorker()
	s.startSearcher("searcher 1", nil)
	s.startSearcher("searcher 2", nil)
	w := newWorkload(t, 2000, 4)
	w.burst = 2 // 20 events/s: six servers and four ragpipe processes share the machine
	w.initial(s)
	states := watchStates(t, s.js, "documents")

	st := buildThenSwitch(t, s, states, w, "three-node cluster", append(toSmall, "--shards", "3", "--replication", "2")...)
	mustServe(t, st, "documents__g2", "documents__g1")
	s.waitDrained(2 * time.Minute)
	for name, want := range map[string][2]uint64{"documents__g1": {2, 1}, "documents__g2": {3, 2}} {
		info, err := s.qc.GetCollectionInfo(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if p := info.GetConfig().GetParams(); uint64(p.GetShardNumber()) != want[0] || uint64(p.GetReplicationFactor()) != want[1] {
			t.Errorf("%s: %d shards, replication %d; want %d and %d", name, p.GetShardNumber(), p.GetReplicationFactor(), want[0], want[1])
		}
	}
	s.assertQdrantServes("documents__g2")
	s.assertQdrantGeneration(w, "documents", newDims, reindexIdentity)
	s.assertQdrantGeneration(w, "documents__g1", oldDims, "")

	runToEnd(t, s, "reindex --drop-previous", reindexCommand("--drop-previous"))
	mustServe(t, states.done(), "documents__g2", "")
	s.assertQdrantServes("documents__g2", "documents__g1")
	s.assertQdrantGeneration(w, "documents__g2", newDims, reindexIdentity)
}

// buildThenSwitch runs `ragpipe reindex args... --no-switch` to its end
// while w's publisher and searches of every tenant run, checks the new
// generation waits ready and not serving, then switches with `ragpipe
// reindex --switch` at the operator's moment: the publisher paused and the
// workers drained, the searches still running. The publisher resumes after
// the switch, with 2s of events and searches. It logs the figures measured,
// fails the test if a search failed and returns the State once done.
func buildThenSwitch(t *testing.T, s *system, states *stateLog, w *workload, what string, args ...string) generation.State {
	t.Helper()
	stopSearches := searching(s.js.Conn(), 2)
	stopPublishing := w.publishing(s.js, w.burst)
	requested := time.Now()
	runToEnd(t, s, "reindex --no-switch", append(args, "--no-switch", "--json"))
	built := states.current()
	if j := jobOf(t, built); j.Phase != generation.Ready || built.Building == nil || built.Serving.Name == built.Building.Name {
		t.Fatalf("after --no-switch: State %s; want the new generation ready, not serving", describeState(built))
	}
	time.Sleep(2 * time.Second) // events and searches while the new generation waits, written
	// Qdrant's alias change waits on each node for the requests in flight,
	// and writes replicated across the loaded cluster can hold it past the
	// requests' timeouts: the operator switches when no events are coming.
	published := stopPublishing()
	s.waitDrained(2 * time.Minute)
	out := runToEnd(t, s, "reindex --switch", reindexCommand("--switch", "--json"))
	t.Logf("%s: ragpipe reindex --switch --json printed: %s", what, jsonLine(out))
	st := states.done()
	stopPublishing = w.publishing(s.js, w.burst)
	time.Sleep(2 * time.Second) // events and searches after the switch
	published += stopPublishing()
	records := stopSearches()
	f, sw := states.figures(jobOf(t, built).ID), states.figures(jobOf(t, st).ID)
	f.switched, f.switchTook = sw.switched, sw.switchTook
	logFigures(t, what, f, records, requested)
	t.Logf("%s: %d events published during the reindex", what, published)
	assertSearches(t, what, records)
	return st
}

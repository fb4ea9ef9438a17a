package integration_test

import (
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/embedtest"
)

// TestReindexCluster reindexes `documents` on the three-node Qdrant cluster
// and a three-server JetStream cluster, from one layout (2 shards, one
// replica each) to another (3 shards, replication 2, by the command's
// --shards and --replication), while events and searches go on: the new
// generation has the new layout and ends exact, no search fails, and
// --drop-previous deletes the old generation.
func TestReindexCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in -short mode")
	}
	if raceEnabled {
		// Six servers and four race-instrumented processes saturate the
		// machine, and on a saturated cluster Qdrant's alias switch holds up
		// the requests to the new generation until they time out: searches
		// fail, and the test with them.
		t.Skip("cluster reindex skipped under the race detector: the machine is saturated")
	}
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

	st := reindexUnderLoad(t, s, states, w, "three-node cluster", append(toSmall, "--shards", "3", "--replication", "2", "--json")...)
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

package integration_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/embedtest"
)

// loadBurst is the events published every 100ms while a reindex runs: 100
// events/s, 40 under the race detector, which slows every process several
// times over.
var loadBurst = map[bool]int{false: 10, true: 4}[raceEnabled]

// ownerProcess returns the process of procs whose reindex Runner is owner
// (host-pid-random).
func ownerProcess(t *testing.T, owner string, procs []*process) *process {
	t.Helper()
	parts := strings.Split(owner, "-")
	for _, p := range procs {
		if len(parts) >= 3 && parts[len(parts)-2] == strconv.Itoa(p.cmd.Process.Pid) {
			return p
		}
	}
	t.Fatalf("no process is the job's owner %q", owner)
	return nil
}

// reindexDocs is the size of the reindex tests' corpus: a few thousand
// documents, half as many under the race detector, a fifth with -short.
func reindexDocs(n int) int {
	switch {
	case testing.Short():
		return n / 5
	case raceEnabled:
		return n / 2
	}
	return n
}

// assertQdrantGeneration fails the test unless the Qdrant collection name
// (an alias or a generation) holds exactly the workload's documents as a
// generation of dims embedded by identity ("" for the hash embedder) holds
// them, and, for the small profile, the test server's vectors of their
// texts.
func (s *system) assertQdrantGeneration(w *workload, name string, dims int, identity string) {
	s.t.Helper()
	s.assertStored(name, w.want(nil, dims, identity))
	if identity == reindexIdentity {
		s.assertVectors(name, dims)
	}
}

// aliasOf returns the collection the Qdrant alias points at, "" for none.
func (s *system) aliasOf(alias string) string {
	s.t.Helper()
	aliases, err := s.qc.ListAliases(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	for _, a := range aliases {
		if a.GetAliasName() == alias {
			return a.GetCollectionName()
		}
	}
	return ""
}

// assertQdrantServes fails the test unless the alias documents points at
// name and the collections of gone no longer exist.
func (s *system) assertQdrantServes(name string, gone ...string) {
	s.t.Helper()
	if got := s.aliasOf("documents"); got != name {
		s.t.Fatalf("alias documents -> %q, want %s", got, name)
	}
	for _, g := range gone {
		if ok, err := s.qc.CollectionExists(s.t.Context(), g); err != nil || ok {
			s.t.Fatalf("collection %s exists (%v), want it dropped", g, err)
		}
	}
}

// TestReindex is the measured run: `documents` (hash embedder, 1024
// dimensions) is reindexed to the small profile (the OpenAI API of the
// embedding test server, 256 dimensions) on a single Qdrant node, with two
// workers and two searchers, while a publisher sends upserts, metadata
// updates and deletes of five tenants' documents and searches of every
// tenant run the whole time. The new generation ends exact (read through
// the alias and by its name) and so does the old one, which workers keep
// writing; a rollback serves the old one again, exact with the events
// published after the switch; a second rollback rolls forward, and
// --drop-previous deletes the old generation. No search may fail or come
// back empty. The figures for the README come from
//
//	go test -count=1 -run 'TestReindex$' -v ./integration_test
func TestReindex(t *testing.T) {
	fake := startReindexFake(t, embedtest.Config{})
	s := newSystem(t, reindexEnv(fake)...)
	s.startWorker()
	s.startWorker()
	s.startSearcher("searcher 1", nil)
	s.startSearcher("searcher 2", nil)
	w := newWorkload(t, reindexDocs(3000), 1)
	w.initial(s)
	states := watchStates(t, s.js, "documents")
	if got := s.aliasOf("documents"); got != generation.Name("documents", 1) {
		t.Fatalf("alias documents -> %q, want documents__g1 before any reindex", got)
	}

	st := reindexUnderLoad(t, s, states, w, "single node", append(toSmall, "--json")...)
	mustServe(t, st, "documents__g2", "documents__g1")
	s.waitDrained(2 * time.Minute)
	s.assertQdrantServes("documents__g2")
	s.assertQdrantGeneration(w, "documents", newDims, reindexIdentity)
	s.assertQdrantGeneration(w, "documents__g2", newDims, reindexIdentity)
	s.assertQdrantGeneration(w, "documents__g1", oldDims, "")

	// Rollback: the old generation serves again, exact with every event
	// published since the switch, and the new one is kept exact too.
	stopSearches := searching(s.js.Conn(), 2)
	stopPublishing := w.publishing(s.js, loadBurst)
	time.Sleep(time.Second)
	runToEnd(t, s, "reindex --rollback", reindexCommand("--rollback"))
	mustServe(t, states.done(), "documents__g1", "documents__g2")
	time.Sleep(time.Second)
	stopPublishing()
	assertSearches(t, "rollback", stopSearches())
	s.waitDrained(2 * time.Minute)
	s.assertQdrantServes("documents__g1")
	s.assertQdrantGeneration(w, "documents", oldDims, "")
	s.assertQdrantGeneration(w, "documents__g2", newDims, reindexIdentity)

	// Forward again, then the old generation is dropped.
	stopSearches = searching(s.js.Conn(), 2)
	stopPublishing = w.publishing(s.js, loadBurst)
	runToEnd(t, s, "reindex --rollback", reindexCommand("--rollback"))
	mustServe(t, states.done(), "documents__g2", "documents__g1")
	runToEnd(t, s, "reindex --drop-previous", reindexCommand("--drop-previous"))
	mustServe(t, states.done(), "documents__g2", "")
	time.Sleep(time.Second)
	stopPublishing()
	assertSearches(t, "roll forward and drop", stopSearches())
	s.waitDrained(2 * time.Minute)
	s.assertQdrantServes("documents__g2", "documents__g1")
	s.assertQdrantGeneration(w, "documents", newDims, reindexIdentity)
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none; first: %v", len(dl), dl[0].header)
	}
}

// TestReindexInterrupted interrupts a reindex both ways while events and
// searches go on: Ctrl-C on `ragpipe reindex` leaves the job running (and
// says how to follow or abort it), and SIGKILL of the worker carrying it
// out, mid-copy, stops it until the other worker takes it over (once the
// killed one's lease has run out), from the last checkpoint instead of
// from the start. Running the same command again attaches to the job and
// exits 0 once it is done; the new generation ends exact.
func TestReindexInterrupted(t *testing.T) {
	// Slow answers from the test server make the copy last long enough to
	// be interrupted twice.
	fake := startReindexFake(t, embedtest.Config{})
	s := newSystem(t, append(reindexEnv(fake), "RAGPIPE_EMBEDDER_SMALL_BATCH_SIZE=8")...)
	workers := []*process{s.startWorker(), s.startWorker()}
	s.startSearcher("searcher", nil)
	w := newWorkload(t, reindexDocs(2000), 2)
	w.initial(s)
	states := watchStates(t, s.js, "documents")
	stopSearches := searching(s.js.Conn(), 2)
	stopPublishing := w.publishing(s.js, loadBurst)
	for range 2000 {
		fake.Fail(embedtest.Fault{Delay: 50 * time.Millisecond})
	}

	cli := s.start("reindex", "", toSmall)
	st := states.wait(time.Minute, "copy begun", func(s generation.State) error {
		if s.Job == nil || s.Job.Phase != generation.Copying || s.Job.Copied == 0 {
			return errNotYet
		}
		return nil
	})
	job := jobOf(t, st.State)
	if code := cli.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("ragpipe reindex exited %d after SIGINT, want 0", code)
	}
	if out := cli.log.String(); !strings.Contains(out, "--abort") || !strings.Contains(out, "--status") {
		t.Errorf("after Ctrl-C, ragpipe reindex does not say how to follow or abort the job:\n%s", tail(out, 5))
	}
	states.wait(time.Minute, "copy going on after Ctrl-C", func(s generation.State) error {
		if s.Job == nil || s.Job.ID != job.ID || s.Job.Copied <= job.Copied {
			return errNotYet
		}
		return nil
	})
	status := runToEnd(t, s, "reindex --status", reindexCommand("--status"))
	if !strings.Contains(status, string(generation.Copying)) {
		t.Errorf("reindex --status during the copy:\n%s", status)
	}

	// SIGKILL of the worker that carries out the job, a third of the way.
	st = states.wait(time.Minute, "copy a third of the way", func(s generation.State) error {
		if s.Job == nil || s.Job.Phase == generation.Copying && s.Job.Copied < int64(len(w.texts)/3) {
			return errNotYet
		}
		return nil
	})
	owner := ownerProcess(t, st.Job.Owner, workers)
	if err := owner.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-owner.done
	killedAt := time.Now()
	last := currentState(t, s.js, "documents") // the checkpoint the killed worker left, not the watch's view
	killed := jobOf(t, last).Copied
	if last.Job.Phase != generation.Copying {
		t.Fatalf("the copy was done (%d documents) when the worker was killed: the test proves nothing", killed)
	}
	t.Logf("worker %s killed after %d documents copied (checkpoint in the State)", st.Job.Owner, killed)
	s.startWorker()

	again := runToEnd(t, s, "reindex (attached)", toSmall)
	done := states.done()
	if done.Job.ID != job.ID {
		t.Fatalf("running the command again made job %s, want it attached to %s", done.Job.ID, job.ID)
	}
	t.Logf("job taken over and done %s after the kill; reindex run again printed:\n%s", time.Since(killedAt).Round(time.Second), tail(again, 8))
	taker := ""
	for _, s := range states.all() {
		if !s.at.After(killedAt) || s.Job == nil || s.Job.ID != job.ID {
			continue
		}
		if s.Job.Copied < killed {
			t.Fatalf("after the kill the copy went back to %d documents from %d: %s", s.Job.Copied, killed, describeState(s.State))
		}
		if taker == "" && s.Job.Owner != "" && s.Job.Owner != st.Job.Owner {
			taker = s.Job.Owner
			t.Logf("job taken over by %s after %s, at %d documents copied", taker, s.at.Sub(killedAt).Round(time.Second), s.Job.Copied)
		}
	}
	if taker == "" {
		t.Error("no other worker took the job over")
	}
	mustServe(t, done, "documents__g2", "documents__g1")
	time.Sleep(time.Second)
	stopPublishing()
	assertSearches(t, "interrupted reindex", stopSearches())
	s.waitDrained(2 * time.Minute)
	s.assertQdrantServes("documents__g2")
	s.assertQdrantGeneration(w, "documents", newDims, reindexIdentity)
	s.assertQdrantGeneration(w, "documents__g1", oldDims, "")
}

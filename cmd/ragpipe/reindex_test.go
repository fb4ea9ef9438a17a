package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/natstest"
)

// startReindex starts a NATS server for the command and returns a function
// running `ragpipe reindex args...` and the server's Registry.
func startReindex(t *testing.T) (func(args ...string) (code int, stdout, stderr string), *generation.Registry) {
	url := natstest.Start(t).ClientURL()
	t.Setenv("NATS_URL", url)
	t.Setenv("RAGPIPE_ENCRYPTION_KEY_FILE", "")
	t.Setenv("RAGPIPE_LOG_LEVEL", "disabled")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	reg, err := generation.Open(t.Context(), js, generation.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return func(args ...string) (code int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		code = run(append([]string{"reindex"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}, reg
}

// awaitJob waits, for at most a minute, until the registry holds a job of
// action for docs that no worker has taken yet: the one the command under
// test has just written. It reports whether one came.
func awaitJob(t *testing.T, reg *generation.Registry, action generation.Action) bool {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, _, err := reg.Current(context.Background(), "docs")
		if err == nil && st.Job != nil && st.Job.Action == action && st.Job.Phase == generation.Waiting {
			return true
		}
	}
	t.Errorf("no %s job waiting after a minute", action)
	return false
}

// TestReindexCommand writes jobs, refuses the requests that cannot be
// carried out, and follows a job a worker (played by the test, through the
// Registry) carries out to the end.
func TestReindexCommand(t *testing.T) {
	reindex, reg := startReindex(t)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--embedder", "small"}, "want --collection"},
		{[]string{"--collection", "docs", "--rollback", "--abort"}, "at most one"},
		{[]string{"--collection", "docs", "--rollback", "--dims", "8"}, "with a build only"},
		{[]string{"--collection", "docs", "--rollback"}, "has no previous generation"},
		{[]string{"--collection", "docs", "--abort"}, "has no generation being built"},
		{[]string{"--collection", "docs", "--distance", "cosinus"}, "want cosine"},
	} {
		code, _, errOut := reindex(tc.args...)
		if code != 1 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("reindex %q: exit %d, %q; want exit 1 and one line saying %q", tc.args, code, errOut, tc.want)
		}
	}

	build := []string{"--collection", "docs", "--embedder", "small", "--dims", "256", "--chunk-overlap", "0"}
	if code, _, errOut := reindex(append(build, "--detach")...); code != 0 || !strings.Contains(errOut, "--status") {
		t.Fatalf("build --detach: exit %d, %q", code, errOut)
	}
	st, _, err := reg.Current(t.Context(), "docs")
	if err != nil {
		t.Fatal(err)
	}
	j := st.Job
	if j == nil || j.Action != generation.Build || j.Phase != generation.Waiting || j.Target.Embedder != "small" || j.Target.Dims != 256 ||
		strings.Join(j.Given, ",") != "chunk_overlap,dims,embedder" {
		t.Fatalf("job written: %+v", j)
	}
	if code, _, errOut := reindex(append(build, "--detach")...); code != 0 || !strings.Contains(errOut, "already running") {
		t.Errorf("the same build again: exit %d, %q", code, errOut)
	}
	if code, _, errOut := reindex("--collection", "docs", "--dims", "8"); code != 1 || !strings.Contains(errOut, "a build job is running") {
		t.Errorf("another build meanwhile: exit %d, %q", code, errOut)
	}
	code, out, _ := reindex("--collection", "docs", "--status", "--json")
	var got generation.State
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Job == nil || got.Job.ID != j.ID {
		t.Errorf("--status --json: exit %d, %q: %v", code, out, err)
	}

	// A worker takes the job, copies, and switches; the command follows.
	var wg sync.WaitGroup
	wg.Go(func() {
		step := func(fn func(s *generation.State)) {
			time.Sleep(300 * time.Millisecond)
			if _, err := reg.Update(context.Background(), "docs", func(s *generation.State, _ bool) error { fn(s); return nil }); err != nil {
				t.Error(err)
			}
		}
		g1 := generation.Generation{Name: "docs__g1", Number: 1, Dims: 1024, Distance: "cosine", ChunkSize: 2000, ChunkOverlap: 200}
		g2 := generation.Generation{Name: "docs__g2", Number: 2, Embedder: "small", Dims: 256, Distance: "cosine", ChunkSize: 2000}
		step(func(s *generation.State) {
			s.Serving, s.Building = g1, &g2
			s.Job.Phase, s.Job.Owner, s.Job.Total = generation.Copying, "w", 30
		})
		step(func(s *generation.State) { s.Job.Copied, s.Job.Points = 10, 30 })
		step(func(s *generation.State) { s.Job.Phase = generation.Checking })
		step(func(s *generation.State) {
			s.Serving, s.Previous, s.Building = g2, &g1, nil
			s.Job.Phase, s.Job.Report = generation.Done, &generation.Report{
				Tenants:  []generation.TenantCount{{UserID: "alice", FromDocs: 10, ToDocs: 10, FromPoints: 30, ToPoints: 30, ToChunks: 30}},
				Searches: 10, Answered: 10, SwitchTook: 3 * time.Millisecond,
			}
		})
	})
	code, out, errOut := reindex(build...)
	wg.Wait()
	for _, want := range []string{"serving  docs__g2", "previous  docs__g1", "alice", "10 of 10 found", "switch took"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 || !strings.Contains(errOut, "following the build job") || !strings.Contains(errOut, "copying docs__g1 into docs__g2") {
		t.Fatalf("following the build: exit %d, stderr %q", code, errOut)
	}

	// A failed rollback exits 1 with its error.
	wg.Go(func() {
		if !awaitJob(t, reg, generation.Rollback) {
			return
		}
		if _, err := reg.Update(context.Background(), "docs", func(s *generation.State, _ bool) error {
			s.Job.Phase, s.Job.Error = generation.Failed, "the store is gone"
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
	code, _, errOut = reindex("--collection", "docs", "--rollback")
	wg.Wait()
	if code != 1 || !strings.Contains(errOut, "the store is gone") {
		t.Errorf("a failed rollback: exit %d, %q", code, errOut)
	}

	// Ctrl-C leaves the job running and says how to follow or stop it.
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("reindex", flag.ContinueOnError)
	runCmd := reindexCommand.flags(fs)
	if err := fs.Parse([]string{"--collection", "docs", "--drop-previous"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err = runCmd(ctx, &environment{cfg: cfg, stdout: &stdout, stderr: &stderr}, fs.Args())
	if err != nil || !strings.Contains(stderr.String(), "--abort") {
		t.Errorf("interrupted: %v, %q", err, stderr.String())
	}
	if st, _, _ := reg.Current(t.Context(), "docs"); st.Job.Action != generation.DropPrevious || st.Job.Phase != generation.Waiting {
		t.Errorf("after the interruption: job %+v", st.Job)
	}
}

// TestReindexKeywordsOnly writes the build of a plain `ragpipe reindex
// --collection NAME`, with no setting given, even when the serving
// generation is one a reindex made: the workers decide whether it changes
// the keyword vectors, and the command shows their refusal when it would
// change nothing.
func TestReindexKeywordsOnly(t *testing.T) {
	reindex, reg := startReindex(t)
	g2 := generation.Generation{Name: "docs__g2", Number: 2, Dims: 1024, Distance: "cosine", ChunkSize: 2000, ChunkOverlap: 200}
	if _, err := reg.Update(t.Context(), "docs", func(s *generation.State, _ bool) error {
		s.Collection, s.Serving = "docs", g2
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	refusal := "nothing to change: the target settings are the serving generation's, and it has keyword vectors as the workers create them (RAGPIPE_KEYWORDS=true)"
	var wg sync.WaitGroup
	wg.Go(func() {
		if !awaitJob(t, reg, generation.Build) {
			return
		}
		if _, err := reg.Update(context.Background(), "docs", func(s *generation.State, _ bool) error {
			if j := s.Job; j == nil || j.Action != generation.Build || len(j.Given) != 0 || j.Target == nil || *j.Target != (generation.Generation{}) {
				t.Errorf("job written: %+v", j)
			}
			s.Job.Phase, s.Job.Error = generation.Failed, refusal
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
	code, _, errOut := reindex("--collection", "docs")
	wg.Wait()
	if code != 1 || !strings.Contains(errOut, "the build job failed: "+refusal) {
		t.Errorf("a build changing nothing: exit %d, %q", code, errOut)
	}
	if code, _, errOut := reindex("--collection", "docs", "--detach"); code != 0 || !strings.Contains(errOut, "build job") {
		t.Errorf("a plain build --detach: exit %d, %q", code, errOut)
	}
	code, out, _ := reindex("--help")
	if help := strings.Join(strings.Fields(out), " "); code != 0 || !strings.Contains(help, "with no setting given, the build turns them on or off alone") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
}

// TestReindexPrint checks the figures of --status and the job's messages.
func TestReindexPrint(t *testing.T) {
	for d, want := range map[time.Duration]string{
		20512345 * time.Nanosecond: "20.5ms", 1234567891 * time.Nanosecond: "1.23s", 312 * time.Microsecond: "312µs",
		42 * time.Nanosecond: "42ns", 3 * time.Millisecond: "3ms",
	} {
		if got := roundDuration(d).String(); got != want {
			t.Errorf("roundDuration(%v) = %s, want %s", d, got, want)
		}
	}
	if article("abort") != "an" || article("build") != "a" {
		t.Error("article")
	}
	var out bytes.Buffer
	r := &reindexer{}
	if err := r.print(&out, generation.State{Collection: "docs", Serving: generation.Generation{Name: "docs__g2"},
		Job: &generation.Job{ID: "j", Action: generation.Rollback, Phase: generation.Done}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "copied") || !strings.Contains(out.String(), "rollback j") {
		t.Errorf("status of a rollback:\n%s", out.String())
	}
}

// TestReindexNoSwitch follows a --no-switch build to its ready phase, then
// writes the --switch job that switches to the generation it left.
func TestReindexNoSwitch(t *testing.T) {
	cli, reg := startReindex(t)
	reindex := func(args ...string) (int, string, string) {
		return cli(append([]string{"--collection", "docs"}, args...)...)
	}
	if code, _, errOut := reindex("--switch", "--no-switch"); code != 1 || !strings.Contains(errOut, "with a build only") {
		t.Errorf("--switch --no-switch: exit %d, %q", code, errOut)
	}
	if code, _, errOut := reindex("--switch"); code != 1 || !strings.Contains(errOut, "no generation being built") {
		t.Errorf("--switch without a build: exit %d, %q", code, errOut)
	}

	g1 := generation.Generation{Name: "docs__g1", Number: 1, Dims: 1024, Distance: "cosine", ChunkSize: 2000, ChunkOverlap: 200}
	g2 := g1
	g2.Name, g2.Number, g2.ChunkSize = "docs__g2", 2, 500
	// worker plays a worker's next step once the command has written a job
	// of action, or, for "", after a pause the command can follow.
	worker := func(action generation.Action, fn func(s *generation.State)) {
		if action == "" {
			time.Sleep(500 * time.Millisecond)
		} else if !awaitJob(t, reg, action) {
			return
		}
		if _, err := reg.Update(context.Background(), "docs", func(s *generation.State, _ bool) error { fn(s); return nil }); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		worker(generation.Build, func(s *generation.State) {
			s.Serving, s.Building = g1, &g2
			s.Job.Phase, s.Job.Report = generation.Ready, &generation.Report{Searches: 3, Answered: 3}
		})
	})
	code, out, errOut := reindex("--chunk-size", "500", "--no-switch")
	wg.Wait()
	if code != 0 || !strings.Contains(errOut, "--switch` switches to it") || !strings.Contains(out, "ready") {
		t.Fatalf("--no-switch: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if st, _, _ := reg.Current(t.Context(), "docs"); !st.Job.NoSwitch {
		t.Errorf("the build's job: %+v", st.Job)
	}
	if code, _, errOut := reindex("--chunk-size", "700"); code != 1 || !strings.Contains(errOut, "built and ready: --switch") {
		t.Errorf("a build while one is ready: exit %d, %q", code, errOut)
	}

	wg.Go(func() {
		worker(generation.Switch, func(s *generation.State) {
			if s.Job.Action != generation.Switch || s.Job.Target == nil || *s.Job.Target != g2 {
				t.Errorf("switch job %+v", s.Job)
			}
			s.Job.Phase = generation.Checking
		})
		worker("", func(s *generation.State) {
			s.Serving, s.Previous, s.Building = g2, &g1, nil
			s.Job.Phase, s.Job.Report = generation.Done, &generation.Report{Searches: 3, Answered: 3, SwitchTook: 20512 * time.Microsecond}
		})
	})
	code, out, errOut = reindex("--switch")
	wg.Wait()
	if code != 0 || !strings.Contains(errOut, "checking docs__g2 against docs__g1 again") || !strings.Contains(out, "20.5ms") ||
		strings.Contains(out, "copied") {
		t.Fatalf("--switch: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

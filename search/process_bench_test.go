package search_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
)

// Environment of the child process that TestSearchChild runs as.
const (
	childNATS   = "RAGPIPE_SEARCH_CHILD_NATS"   // the NATS server's URL
	childQdrant = "RAGPIPE_SEARCH_CHILD_QDRANT" // Qdrant's gRPC port
	// childProcs, when set in the benchmark's environment, is the child's
	// GOMAXPROCS.
	childProcs = "RAGPIPE_SEARCH_CHILD_GOMAXPROCS"
)

// BenchmarkSearchProcess times BenchmarkSearchOverhead's rag and qdrant
// paths with the search service in a process of its own, as `ragpipe
// bench` runs the searcher: the NATS server, the client and the raw Query
// run here, the service in a child process (this test binary running
// TestSearchChild). store is the service's own Qdrant call (embedding and
// the store's Search) made here, without NATS; ping is a $SRV.PING that
// the child answers: the NATS round trip to it alone. Each path's p50 and
// its CPU time per call are reported in µs: this process's
// (<path>-cpu-µs), the child's (<path>-cpu-child-µs) and Qdrant's
// (<path>-cpu-qdrant-µs), the last two from /proc, so Linux only;
// overhead-µs is rag's p50 minus qdrant's.
// RAGPIPE_SEARCH_CHILD_GOMAXPROCS sets the child's GOMAXPROCS.
//
//	flock /tmp/ragpipe-test.lock go test -run XXX -bench SearchProcess -benchtime 1500x ./search
func BenchmarkSearchProcess(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("no /proc: the child's CPU time cannot be read")
	}
	ns := natstest.Start(b)
	client := natstest.Connect(b, ns)
	node := qdranttest.Start(b)
	store, emb := overheadStore(b, node.GRPCPort(), zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.ErrorLevel))
	texts := fillOverhead(b, store, emb)
	bodies, queries, raws := overheadRequests(b, emb, texts)
	childCPU := procCPU(startChild(b, ns.ClientURL(), node.GRPCPort()))
	paths := []overheadPath{
		{"rag", ragCall(client, "rag", bodies)},
		{"qdrant", qdrantCall(store, raws)},
		{"store", storeCall(store, emb, queries)},
		{"ping", func(context.Context, int) error {
			_, err := client.Request("$SRV.PING."+search.ServiceName, nil, 10*time.Second)
			return err
		}},
	}
	warmUp(b, paths)
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			lat, cpus := timeCalls(b, conc, paths, cputimetest.Now, childCPU, procCPU(node.Pid()))
			reportPaths(b, paths, lat, cpus, "", "-child", "-qdrant")
			b.ReportMetric(float64((lat[0][len(lat[0])/2] - lat[1][len(lat[1])/2]).Microseconds()), "overhead-µs")
		})
	}
}

// startChild starts this test binary as the searcher, TestSearchChild, and
// returns its process id once its service answers.
func startChild(b *testing.B, natsURL string, qdrantPort int) int {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSearchChild$")
	cmd.Env = append(os.Environ(), childNATS+"="+natsURL, childQdrant+"="+strconv.Itoa(qdrantPort))
	if procs := os.Getenv(childProcs); procs != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+procs)
	}
	cmd.Stderr = os.Stderr
	// The child serves until its stdin, the read end of a pipe, ends.
	stdin, stop, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdin = stdin
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	_ = stdin.Close() // the child's copy remains
	if err != nil {
		_ = stop.Close()
		b.Fatal(err)
	}
	copied := make(chan struct{})
	b.Cleanup(func() {
		_ = stop.Close()
		<-copied // Wait closes out: every read from it must be done
		if err := cmd.Wait(); err != nil {
			b.Errorf("searcher child: %v", err)
		}
	})
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	go func() {
		_, _ = io.Copy(io.Discard, r)
		close(copied)
	}()
	if line != "ready\n" {
		b.Fatalf("searcher child: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// procCPU is the CPU time, user and system, of process pid.
func procCPU(pid int) func(testing.TB) time.Duration {
	return func(tb testing.TB) time.Duration {
		return cputimetest.Process(tb, pid)
	}
}

// TestSearchChild is BenchmarkSearchProcess's searcher: skipped unless
// that benchmark started it. It serves rag.search over the Qdrant and NATS
// server its environment names until its stdin closes.
func TestSearchChild(t *testing.T) {
	natsURL, port := os.Getenv(childNATS), os.Getenv(childQdrant)
	if natsURL == "" {
		t.Skip("run by BenchmarkSearchProcess")
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
	store, emb := overheadStore(t, p, log)
	svc, err := search.Start(t.Context(), search.Config{
		Conn: nc, Index: store, Embedder: func(string) search.Embedder { return emb }, Logger: log, Metrics: telemetry.NewMetrics(),
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := svc.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

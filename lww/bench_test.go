package lww_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// serverEnv, set in its environment, makes the test binary a NATS server
// process for BenchmarkClaim (TestServerProcess).
const serverEnv = "LWW_BENCH_SERVER"

// TestServerProcess is no test: BenchmarkClaim runs the test binary again
// with it, so that the NATS server runs in another process and the
// benchmark's CPU figures are the claiming side's alone. It prints the
// server's URL and serves until its standard input is closed.
func TestServerProcess(t *testing.T) {
	if os.Getenv(serverEnv) == "" {
		t.Skip("the server process of BenchmarkClaim")
	}
	fmt.Println(natstest.Start(t).ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// serverProcess starts TestServerProcess in a child process and returns its
// URL and pid; the child stops when the benchmark ends.
func serverProcess(b *testing.B) (string, int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
	cmd.Env = append(os.Environ(), serverEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if url := lines.Text(); strings.HasPrefix(url, "nats://") {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return url, cmd.Process.Pid
		}
	}
	b.Fatalf("the server process printed no URL: %v", lines.Err())
	return "", 0
}

type noPruner struct{}

func (noPruner) Prune(context.Context, string, []pipeline.DocVersion) error { return nil }

// BenchmarkClaim claims batches of 256 documents with Protocol.Claim against
// a NATS server in another process: new documents (each batch new to the
// register) and known ones (each batch a newer version of the same 256
// documents). It reports this process's CPU per claim and the server's.
func BenchmarkClaim(b *testing.B) {
	const batch = 256
	url, pid := serverProcess(b)
	r, err := lww.NewRegister(b.Context(), jetStream(b, url), "rag", 1)
	if err != nil {
		b.Fatal(err)
	}
	p, err := lww.New(lww.Config{Versions: r, Pruner: noPruner{}})
	if err != nil {
		b.Fatal(err)
	}
	runs := 0
	claim := func(b *testing.B, collection string, docs []pipeline.DocVersion) {
		c := p.Claim(b.Context(), collection, docs)
		if len(c.Held()) != len(docs) {
			b.Fatalf("%d of %d claims held: %v", len(c.Held()), len(docs), c.Settle(b.Context(), nil))
		}
	}
	for _, known := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "known"}[known], func(b *testing.B) {
			runs++
			collection := fmt.Sprint("c", runs)
			batches := make([][]pipeline.DocVersion, b.N+1)
			for i := range batches {
				batches[i] = make([]pipeline.DocVersion, batch)
				for j := range batch {
					id := fmt.Sprint("d", j)
					if !known {
						id = fmt.Sprint("d", i, ".", j)
					}
					batches[i][j] = pipeline.DocVersion{UserID: "u", DocID: id, Version: uint64(i + 1)}
				}
			}
			if known { // the documents exist, and the register has learned it
				claim(b, collection, batches[0])
				for v := range uint64(2) {
					docs := append([]pipeline.DocVersion(nil), batches[0]...)
					for j := range docs {
						docs[j].Version = 1000 + v
					}
					claim(b, collection, docs)
				}
				for i := 1; i <= b.N; i++ {
					for j := range batches[i] {
						batches[i][j].Version += 1000
					}
				}
			} else {
				claim(b, collection, batches[0])
			}
			b.ResetTimer()
			done, server := cputimetest.Per(b, batch, "cpu-ns/claim"), cputimetest.Process(b, pid)
			for i := 1; i <= b.N; i++ {
				claim(b, collection, batches[i])
			}
			b.StopTimer()
			done()
			claims := float64(b.N * batch)
			b.ReportMetric(float64(cputimetest.Process(b, pid)-server)/claims, "server-cpu-ns/claim")
			b.ReportMetric(float64(b.Elapsed())/claims, "ns/claim")
		})
	}
}

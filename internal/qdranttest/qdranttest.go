// Package qdranttest runs real Qdrant server processes for tests: a single
// node (Start) or a cluster (StartCluster), each on free loopback ports with
// its own temporary storage, stopped by t.Cleanup. The processes themselves
// are managed by internal/qdrantproc.
//
// The binary comes from scripts/install-qdrant.sh (Qdrant 1.16.3, cached under
// ~/.cache/ragpipe), or from $QDRANT_BIN when set. A node's log is kept in a
// file in its temporary directory; its tail is printed when the test fails.
//
// Processes never outlive the test binary: they are killed by t.Cleanup and,
// on Linux, by the kernel when the test binary dies (Pdeathsig).
package qdranttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/qdrantproc"
)

// tailLines is how much of a node's log is printed on failure.
const tailLines = 80

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the Qdrant server binary, running
// scripts/install-qdrant.sh once per test process (the script honours
// QDRANT_BIN and caches the download). It fails the test if the binary cannot
// be installed.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = install() })
	if binErr != nil {
		t.Fatalf("qdranttest: %v", binErr)
	}
	return binPath
}

func install() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the qdranttest source file")
	}
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "install-qdrant.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
	}
	path := strings.TrimSpace(stdout.String())
	if path == "" {
		return "", fmt.Errorf("%s printed no path\n%s", script, stderr.String())
	}
	return path, nil
}

// Options customise the nodes started by StartWith and StartClusterWith.
type Options struct {
	// Env holds extra environment variables for the Qdrant process, such as
	// QDRANT__SERVICE__API_KEY. They override the defaults qdranttest sets.
	Env map[string]string
}

// Node is one Qdrant server process. Its methods may be called from any
// goroutine of the test.
type Node struct {
	proc *qdrantproc.Node
}

// Start starts a single Qdrant node on free loopback ports with its own
// temporary storage and waits until it answers HTTP /readyz and accepts gRPC
// connections. The node is killed by t.Cleanup.
func Start(t testing.TB) *Node {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Node {
	t.Helper()
	n := newNode(t, o, false)
	n.start(t, nil)
	return n
}

// StartCluster starts n nodes in cluster mode: the first with --uri
// http://127.0.0.1:<p2p>, the others bootstrapping from it. It returns once
// every node is ready and sees all n peers with an elected leader. The nodes
// are killed by t.Cleanup.
func StartCluster(t testing.TB, n int) []*Node {
	t.Helper()
	return StartClusterWith(t, n, Options{})
}

// StartClusterWith is StartCluster with options.
func StartClusterWith(t testing.TB, n int, o Options) []*Node {
	t.Helper()
	if n < 1 {
		t.Fatalf("qdranttest: cluster of %d nodes", n)
	}
	nodes := make([]*Node, n)
	for i := range nodes {
		nodes[i] = newNode(t, o, true)
		var bootstrap *Node
		if i > 0 {
			bootstrap = nodes[0]
		}
		nodes[i].start(t, bootstrap)
	}
	WaitCluster(t, nodes)
	return nodes
}

// WaitCluster waits until every node in nodes is ready and reports all of
// them as peers with a known leader and no pending consensus operations.
func WaitCluster(t testing.TB, nodes []*Node) {
	t.Helper()
	procs := make([]*qdrantproc.Node, len(nodes))
	for i, n := range nodes {
		procs[i] = n.proc
	}
	if err := qdrantproc.WaitCluster(t.Context(), procs); err != nil {
		t.Fatalf("qdranttest: cluster not ready: %v", err) // the cleanup prints the logs
	}
}

func newNode(t testing.TB, o Options, cluster bool) *Node {
	t.Helper()
	proc, err := qdrantproc.New(qdrantproc.Config{
		Bin:     Binary(t),
		Dir:     t.TempDir(), // removed after the cleanup below has killed the process
		Env:     o.Env,
		Cluster: cluster,
		Logf:    t.Logf,
	})
	if err != nil {
		t.Fatalf("qdranttest: %v", err)
	}
	t.Cleanup(func() {
		_ = proc.Kill()
		if t.Failed() {
			t.Logf("qdranttest: last lines of %s (grpc %s):\n%s", proc.LogPath(), proc.GRPCAddr(), proc.LogTail(tailLines))
		}
	})
	return &Node{proc: proc}
}

// start starts the node; a cluster node other than the first bootstraps
// from bootstrap.
func (n *Node) start(t testing.TB, bootstrap *Node) {
	t.Helper()
	var from *qdrantproc.Node
	if bootstrap != nil {
		from = bootstrap.proc
	}
	if err := n.proc.Start(t.Context(), from); err != nil {
		t.Fatalf("qdranttest: start: %v", err) // the cleanup prints the log
	}
}

// GRPCAddr is the node's gRPC address, "127.0.0.1:port".
func (n *Node) GRPCAddr() string { return n.proc.GRPCAddr() }

// GRPCPort is the node's gRPC port.
func (n *Node) GRPCPort() int { return n.proc.GRPCPort() }

// HTTPPort is the node's REST port.
func (n *Node) HTTPPort() int { return n.proc.HTTPPort() }

// HTTPURL is the base URL of the node's REST API.
func (n *Node) HTTPURL() string { return n.proc.HTTPURL() }

// URL is the node's gRPC endpoint in QDRANT_URL form, "http://127.0.0.1:port".
func (n *Node) URL() string { return n.proc.URL() }

// Pid is the server's process id, 0 when it is not running.
func (n *Node) Pid() int { return n.proc.Pid() }

// Kill sends SIGKILL and waits until the process has exited.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	if err := n.proc.Kill(); err != nil {
		t.Fatalf("qdranttest: %v", err)
	}
}

// Stop sends SIGTERM and waits until the process has exited, killing it if it
// takes longer than 30s.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if err := n.proc.Stop(); err != nil {
		t.Fatalf("qdranttest: %v", err)
	}
}

// Restart starts the node again on the same ports and storage (stopping it
// first if it is running) and waits until it is ready; a cluster node rejoins
// its cluster.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if err := n.proc.Restart(t.Context()); err != nil {
		t.Fatalf("qdranttest: restart: %v", err) // the cleanup prints the log
	}
}

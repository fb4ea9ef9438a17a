// Package qdranttest runs real Qdrant server processes for tests: a single
// node (Start) or a cluster (StartCluster), each on free loopback ports with
// its own temporary storage, stopped by t.Cleanup.
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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a node may take to become ready.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 30 * time.Second
	// startAttempts is how often Start retries when a picked port is taken.
	startAttempts = 5
	// pollInterval is the readiness polling period.
	pollInterval = 50 * time.Millisecond
	// tailLines is how much of a node's log is printed on failure.
	tailLines = 80
)

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
	bin      string
	dir      string
	logPath  string
	env      []string // inherited, without QDRANT__ variables
	extraEnv []string // from Options
	args     []string
	grpcPort int
	httpPort int
	p2pPort  int
	cluster  bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
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
	n.startFresh(t, nil)
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
		nodes[i].startFresh(t, bootstrap)
	}
	WaitCluster(t, nodes)
	return nodes
}

// WaitCluster waits until every node in nodes is ready and reports all of
// them as peers with a known leader and no pending consensus operations.
func WaitCluster(t testing.TB, nodes []*Node) {
	t.Helper()
	err := poll(t.Context(), readyTimeout, func(ctx context.Context) error {
		for _, n := range nodes {
			if err := n.ready(ctx); err != nil {
				return err
			}
			st, err := n.clusterStatus(ctx)
			if err != nil {
				return err
			}
			if len(st.Peers) != len(nodes) {
				return fmt.Errorf("%s sees %d peers, want %d", n.HTTPURL(), len(st.Peers), len(nodes))
			}
			if st.RaftInfo.Leader == nil || st.RaftInfo.PendingOperations != 0 {
				return fmt.Errorf("%s: consensus not settled (leader %v, pending %d)",
					n.HTTPURL(), st.RaftInfo.Leader, st.RaftInfo.PendingOperations)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("qdranttest: cluster not ready: %v", err) // the cleanup prints the logs
	}
}

func newNode(t testing.TB, o Options, cluster bool) *Node {
	t.Helper()
	dir := t.TempDir() // removed after the cleanup below has killed the process
	n := &Node{
		bin:     Binary(t),
		dir:     dir,
		logPath: filepath.Join(dir, "qdrant.log"),
		cluster: cluster,
	}
	for _, sub := range []string{"storage", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("qdranttest: %v", err)
		}
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QDRANT__") { // no outside configuration
			n.env = append(n.env, kv)
		}
	}
	for k, v := range o.Env {
		n.extraEnv = append(n.extraEnv, k+"="+v)
	}
	t.Cleanup(func() {
		n.signalAndWait(syscall.SIGKILL, stopTimeout)
		if t.Failed() {
			n.logTail(t)
		}
	})
	return n
}

// startFresh picks ports and starts the node, picking new ports when one of
// them turns out to be taken. A cluster node other than the first bootstraps
// from bootstrap.
func (n *Node) startFresh(t testing.TB, bootstrap *Node) {
	t.Helper()
	var err error
	for attempt := range startAttempts {
		if attempt > 0 { // forget the raft state of the failed attempt
			storage := filepath.Join(n.dir, "storage")
			if err := errors.Join(os.RemoveAll(storage), os.MkdirAll(storage, 0o755)); err != nil {
				t.Fatalf("qdranttest: %v", err)
			}
		}
		ports, perr := freePorts(3)
		if perr != nil {
			t.Fatalf("qdranttest: %v", perr)
		}
		n.grpcPort, n.httpPort, n.p2pPort = ports[0], ports[1], ports[2]
		n.args = nil
		if n.cluster {
			n.args = []string{"--uri", fmt.Sprintf("http://127.0.0.1:%d", n.p2pPort)}
			if bootstrap != nil {
				n.args = append(n.args, "--bootstrap", fmt.Sprintf("http://127.0.0.1:%d", bootstrap.p2pPort))
			}
		}
		if err = n.launchAndWait(t); !errors.Is(err, errPortInUse) {
			break
		}
		t.Logf("qdranttest: port clash, retrying: %v", err)
	}
	if err != nil {
		t.Fatalf("qdranttest: start: %v", err) // the cleanup prints the log
	}
}

var errPortInUse = errors.New("port in use")

// launchAndWait starts the process and waits until it is ready. It returns
// an error wrapping errPortInUse when Qdrant could not bind a port (it then
// exits, or, for the gRPC port, keeps running half-started).
func (n *Node) launchAndWait(t testing.TB) error {
	t.Helper()
	done, offset, err := n.launch()
	if err != nil {
		return err
	}
	clash := func() error {
		for _, line := range strings.Split(n.readLog(offset), "\n") {
			// A taken gRPC port shows only as "Error while starting gRPC
			// server: transport error", and Qdrant stays up half-started.
			if strings.Contains(line, "Address already in use") || strings.Contains(line, "Error while starting") {
				return fmt.Errorf("%w: %s", errPortInUse, strings.TrimSpace(line))
			}
		}
		return nil
	}
	err = poll(t.Context(), readyTimeout, func(ctx context.Context) error {
		select {
		case <-done:
			return stopPolling{errExited}
		default:
		}
		if err := clash(); err != nil {
			return stopPolling{err}
		}
		if err := n.ready(ctx); err != nil {
			return err
		}
		// The gRPC port may have answered for another process.
		if err := clash(); err != nil {
			return stopPolling{err}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	n.signalAndWait(syscall.SIGKILL, stopTimeout)
	if errors.Is(err, errExited) {
		if cerr := clash(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("qdrant exited during start-up: %s", lastLines(n.readLog(offset), 10))
	}
	return err
}

var errExited = errors.New("qdrant exited")

// httpClient keeps no idle connections: Qdrant's graceful shutdown waits
// for open keep-alive connections to close.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (n *Node) launch() (done chan struct{}, logOffset int64, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil, 0, errors.New("qdrant is already running")
	}
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close() // the child holds its own descriptor
	if st, err := f.Stat(); err == nil {
		logOffset = st.Size()
	}
	fmt.Fprintf(f, "=== qdranttest: starting %s %s (grpc %d, http %d, p2p %d) at %s ===\n",
		n.bin, strings.Join(n.args, " "), n.grpcPort, n.httpPort, n.p2pPort, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.dir // Qdrant looks for ./config and ./static relative to it
	cmd.Stdout, cmd.Stderr = f, f
	// For duplicate keys the last one counts: options override defaults.
	cmd.Env = slices.Concat(n.env, n.baseEnv(), n.extraEnv)
	cmd.SysProcAttr = sysProcAttr()
	// Pdeathsig fires when the thread that started the child exits; keep
	// this goroutine on one thread while starting so that thread is not one
	// the runtime is about to retire.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, 0, fmt.Errorf("start %s: %w", n.bin, err)
	}
	done = make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		_ = cmd.Wait()
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(done)
	}()
	return done, logOffset, nil
}

func (n *Node) baseEnv() []string {
	env := []string{
		"QDRANT__SERVICE__HOST=127.0.0.1",
		"QDRANT__TELEMETRY_DISABLED=true",
		"QDRANT__SERVICE__GRPC_PORT=" + strconv.Itoa(n.grpcPort),
		"QDRANT__SERVICE__HTTP_PORT=" + strconv.Itoa(n.httpPort),
		"QDRANT__CLUSTER__P2P__PORT=" + strconv.Itoa(n.p2pPort),
		"QDRANT__STORAGE__STORAGE_PATH=" + filepath.Join(n.dir, "storage"),
		"QDRANT__STORAGE__SNAPSHOTS_PATH=" + filepath.Join(n.dir, "snapshots"),
	}
	if n.cluster {
		env = append(env, "QDRANT__CLUSTER__ENABLED=true")
	}
	return env
}

// ready reports nil once /readyz answers 200 and the gRPC port accepts
// connections.
func (n *Node) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HTTPURL()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %s: %s", n.HTTPURL(), resp.Status, bytes.TrimSpace(body))
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", n.GRPCAddr())
	if err != nil {
		return err
	}
	return conn.Close()
}

type clusterStatus struct {
	Status   string                     `json:"status"`
	PeerID   uint64                     `json:"peer_id"`
	Peers    map[string]json.RawMessage `json:"peers"`
	RaftInfo struct {
		Leader            *uint64 `json:"leader"`
		PendingOperations int     `json:"pending_operations"`
		Role              string  `json:"role"`
	} `json:"raft_info"`
}

func (n *Node) clusterStatus(ctx context.Context) (*clusterStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.HTTPURL()+"/cluster", nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Result clusterStatus `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s/cluster: %s: %w", n.HTTPURL(), resp.Status, err)
	}
	return &body.Result, nil
}

// GRPCAddr is the node's gRPC address, "127.0.0.1:port".
func (n *Node) GRPCAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.grpcPort)) }

// GRPCPort is the node's gRPC port.
func (n *Node) GRPCPort() int { return n.grpcPort }

// HTTPPort is the node's REST port.
func (n *Node) HTTPPort() int { return n.httpPort }

// HTTPURL is the base URL of the node's REST API.
func (n *Node) HTTPURL() string { return "http://127.0.0.1:" + strconv.Itoa(n.httpPort) }

// URL is the node's gRPC endpoint in QDRANT_URL form, "http://127.0.0.1:port".
func (n *Node) URL() string { return "http://" + n.GRPCAddr() }

// Dir is the node's temporary directory (storage, snapshots and log).
func (n *Node) Dir() string { return n.dir }

// Kill sends SIGKILL and waits until the process has exited.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	if !n.signalAndWait(syscall.SIGKILL, stopTimeout) {
		t.Fatalf("qdranttest: %s did not exit after SIGKILL", n.GRPCAddr())
	}
}

// Stop sends SIGTERM and waits until the process has exited, killing it if it
// takes longer than 30s.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if !n.signalAndWait(syscall.SIGTERM, stopTimeout) {
		t.Logf("qdranttest: %s ignored SIGTERM for %s, killing it", n.GRPCAddr(), stopTimeout)
		n.Kill(t)
	}
}

// Restart starts the node again on the same ports and storage (stopping it
// first if it is running) and waits until it is ready; a cluster node rejoins
// its cluster.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Stop(t)
	var err error
	// The old process's ports may linger briefly; retry on a clash, the
	// ports can't change because the node's peers and clients know them.
	err = poll(t.Context(), readyTimeout, func(context.Context) error {
		err := n.launchAndWait(t)
		if errors.Is(err, errPortInUse) {
			return err
		}
		if err != nil {
			return stopPolling{err}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("qdranttest: restart: %v", err) // the cleanup prints the log
	}
}

// signalAndWait signals the running process, if any, and reports whether it
// exited within timeout.
func (n *Node) signalAndWait(sig syscall.Signal, timeout time.Duration) bool {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (n *Node) readLog(offset int64) string {
	f, err := os.Open(n.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func (n *Node) logTail(t testing.TB) {
	t.Helper()
	t.Logf("qdranttest: last lines of %s (grpc %s):\n%s", n.logPath, n.GRPCAddr(), lastLines(n.readLog(0), tailLines))
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns k distinct loopback ports that were free a moment ago.
func freePorts(k int) ([]int, error) {
	ports := make([]int, 0, k)
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close() // held until all are picked, so they are distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// stopPolling makes poll return its error at once.
type stopPolling struct{ error }

func (s stopPolling) Unwrap() error { return s.error }

// poll calls f every pollInterval until it returns nil, returns a
// stopPolling error, timeout passes or ctx ends; it returns f's last error.
func poll(ctx context.Context, timeout time.Duration, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(actx)
		acancel()
		if err == nil {
			return nil
		}
		var stop stopPolling
		if errors.As(err, &stop) {
			return stop.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %s)", err, timeout)
		case <-tick.C:
		}
	}
}

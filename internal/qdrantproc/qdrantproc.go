// Package qdrantproc runs real Qdrant servers as child processes: a single
// node or cluster members, each on free loopback ports, with its storage,
// snapshots and log in a directory of the caller's. It starts a node and
// waits until it is ready, picking new ports when one turns out to be taken;
// it stops, kills and restarts nodes and reads their logs.
//
// internal/qdranttest builds its test helpers on it, and `ragpipe bench`
// starts its Qdrant with it. On Linux a child never outlives its parent: the
// kernel kills it when the parent dies (Pdeathsig).
package qdrantproc

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
	"time"
)

// Version is the Qdrant release ragpipe is tested against, the one
// scripts/install-qdrant.sh installs.
const Version = "1.16.3"

const (
	// readyTimeout bounds how long a node may take to become ready.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL,
	// and Kill after SIGKILL.
	stopTimeout = 30 * time.Second
	// startAttempts is how often Start retries when a picked port is taken.
	startAttempts = 5
	// pollInterval is the readiness polling period.
	pollInterval = 50 * time.Millisecond
)

// Find returns the Qdrant server binary to run: $QDRANT_BIN when set, else
// `qdrant` on the PATH, else the binary scripts/install-qdrant.sh caches in
// ${XDG_CACHE_HOME:-$HOME/.cache}/ragpipe/qdrant-1.16.3/qdrant. Its error
// says how to get one when there is none.
func Find() (string, error) {
	if bin := os.Getenv("QDRANT_BIN"); bin != "" {
		if err := executable(bin); err != nil {
			return "", fmt.Errorf("QDRANT_BIN=%s: %w", bin, err)
		}
		return bin, nil
	}
	if bin, err := exec.LookPath("qdrant"); err == nil {
		return bin, nil
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME, else $HOME/.cache
	if err != nil {
		return "", fmt.Errorf("no Qdrant binary: QDRANT_BIN is unset, no qdrant is on the PATH, and %w", err)
	}
	bin := filepath.Join(cache, "ragpipe", "qdrant-"+Version, "qdrant")
	if err := executable(bin); err != nil {
		return "", fmt.Errorf("no Qdrant binary: QDRANT_BIN is unset, no qdrant is on the PATH, and %w; run scripts/install-qdrant.sh", err)
	}
	return bin, nil
}

// executable reports why path is not an executable file, if it is not.
func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// Config describes a node for New.
type Config struct {
	// Bin is the Qdrant server binary, see Find. Required.
	Bin string
	// Dir is the node's directory, which must exist: its working directory,
	// storage, snapshots and log file (qdrant.log). Required.
	Dir string
	// Env holds extra environment variables for the process, such as
	// QDRANT__SERVICE__API_KEY; they override the ones qdrantproc sets. The
	// QDRANT__ variables of this process's environment are never passed on.
	Env map[string]string
	// Cluster starts the node in cluster mode, reachable by its peers on
	// its p2p port.
	Cluster bool
	// Logf receives notices: a port clash retried, a node killed after
	// ignoring SIGTERM. Default: none.
	Logf func(format string, args ...any)
}

// Node is one Qdrant server process. Its methods may be called from any
// goroutine.
type Node struct {
	bin      string
	dir      string
	logPath  string
	env      []string // inherited, without QDRANT__ variables
	extraEnv []string // from Config.Env
	cluster  bool
	logf     func(format string, args ...any)

	// Set by Start, before the process runs.
	args     []string
	grpcPort int
	httpPort int
	p2pPort  int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
}

// New prepares a node in cfg.Dir, creating its storage and snapshots
// directories, without starting it.
func New(cfg Config) (*Node, error) {
	if cfg.Bin == "" || cfg.Dir == "" {
		return nil, errors.New("qdrantproc: Bin and Dir are required")
	}
	n := &Node{
		bin:     cfg.Bin,
		dir:     cfg.Dir,
		logPath: filepath.Join(cfg.Dir, "qdrant.log"),
		cluster: cfg.Cluster,
		logf:    cfg.Logf,
	}
	if n.logf == nil {
		n.logf = func(string, ...any) {}
	}
	for _, sub := range []string{"storage", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("qdrantproc: %w", err)
		}
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QDRANT__") { // no outside configuration
			n.env = append(n.env, kv)
		}
	}
	for k, v := range cfg.Env {
		n.extraEnv = append(n.extraEnv, k+"="+v)
	}
	return n, nil
}

// Start picks free loopback ports, starts the node and waits until it is
// ready: HTTP /readyz answers 200 and the gRPC port accepts connections. It
// picks new ports when one of them turns out to be taken. A cluster node
// bootstraps from bootstrap, a running member of its cluster; the first
// node of a cluster, like a single node, has none (nil). When Start fails,
// the node is not running and LogTail tells why.
func (n *Node) Start(ctx context.Context, bootstrap *Node) error {
	var err error
	for attempt := range startAttempts {
		if attempt > 0 { // forget the raft state of the failed attempt
			storage := filepath.Join(n.dir, "storage")
			if err := errors.Join(os.RemoveAll(storage), os.MkdirAll(storage, 0o755)); err != nil {
				return err
			}
		}
		ports, perr := FreePorts(3)
		if perr != nil {
			return perr
		}
		n.grpcPort, n.httpPort, n.p2pPort = ports[0], ports[1], ports[2]
		n.args = nil
		if n.cluster {
			n.args = []string{"--uri", fmt.Sprintf("http://127.0.0.1:%d", n.p2pPort)}
			if bootstrap != nil {
				n.args = append(n.args, "--bootstrap", fmt.Sprintf("http://127.0.0.1:%d", bootstrap.p2pPort))
			}
		}
		if err = n.launchAndWait(ctx); !errors.Is(err, errPortInUse) {
			return err
		}
		n.logf("qdrantproc: port clash, retrying: %v", err)
	}
	return err
}

var errPortInUse = errors.New("port in use")

// launchAndWait starts the process and waits until it is ready. It returns
// an error wrapping errPortInUse when Qdrant could not bind a port (it then
// exits, or, for the gRPC port, keeps running half-started).
func (n *Node) launchAndWait(ctx context.Context) error {
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
	err = poll(ctx, readyTimeout, func(ctx context.Context) error {
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
	fmt.Fprintf(f, "=== qdrantproc: starting %s %s (grpc %d, http %d, p2p %d) at %s ===\n",
		n.bin, strings.Join(n.args, " "), n.grpcPort, n.httpPort, n.p2pPort, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(n.bin, n.args...)
	cmd.Dir = n.dir // Qdrant looks for ./config and ./static relative to it
	cmd.Stdout, cmd.Stderr = f, f
	// For duplicate keys the last one counts: options override defaults.
	cmd.Env = slices.Concat(n.env, n.baseEnv(), n.extraEnv)
	if err := StartChild(cmd); err != nil {
		return nil, 0, err
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

// StartChild starts cmd the way nodes are started: in a process group of its
// own, so that a terminal's Ctrl-C reaches only this process, which is then
// expected to stop the child; and, on Linux, killed by the kernel when this
// process dies.
func StartChild(cmd *exec.Cmd) error {
	cmd.SysProcAttr = sysProcAttr()
	// Pdeathsig fires when the thread that started the child exits; keep
	// this goroutine on one thread while starting so that thread is not one
	// the runtime is about to retire.
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
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

// WaitCluster waits until every node in nodes is ready and reports all of
// them as peers with a known leader and no pending consensus operations.
func WaitCluster(ctx context.Context, nodes []*Node) error {
	return poll(ctx, readyTimeout, func(ctx context.Context) error {
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

// Pid is the process id of the running server, 0 when it is not running.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// LogPath is the node's log file, which every start appends to.
func (n *Node) LogPath() string { return n.logPath }

// Kill sends SIGKILL and waits until the process has exited. Killing a node
// that is not running does nothing.
func (n *Node) Kill() error {
	if !n.signalAndWait(syscall.SIGKILL, stopTimeout) {
		return fmt.Errorf("%s did not exit after SIGKILL", n.GRPCAddr())
	}
	return nil
}

// Stop sends SIGTERM and waits until the process has exited, killing it if it
// takes longer than 30s. Stopping a node that is not running does nothing.
func (n *Node) Stop() error {
	if !n.signalAndWait(syscall.SIGTERM, stopTimeout) {
		n.logf("qdrantproc: %s ignored SIGTERM for %s, killing it", n.GRPCAddr(), stopTimeout)
		return n.Kill()
	}
	return nil
}

// Restart starts the node again on the same ports and storage (stopping it
// first if it is running) and waits until it is ready; a cluster node rejoins
// its cluster.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Stop(); err != nil {
		return err
	}
	// The old process's ports may linger briefly; retry on a clash, the
	// ports can't change because the node's peers and clients know them.
	return poll(ctx, readyTimeout, func(context.Context) error {
		err := n.launchAndWait(ctx)
		if errors.Is(err, errPortInUse) {
			return err
		}
		if err != nil {
			return stopPolling{err}
		}
		return nil
	})
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

// LogTail returns the last k lines of the node's log.
func (n *Node) LogTail(k int) string { return lastLines(n.readLog(0), k) }

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// FreePorts returns k distinct loopback TCP ports that were free a moment
// ago.
func FreePorts(k int) ([]int, error) {
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

package natstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/qdrantproc"
)

// Process is a nats-server running as its own process, so that a test can
// SIGKILL it. The binary is built from the nats-server module this project
// already depends on: the same server as the embedded one.
type Process struct {
	name        string
	port        int
	clusterPort int
	dir         string // config, store and log
	routes      []string
	cmd         *exec.Cmd
	done        chan struct{}
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// serverModule is the module nats-server is built from.
const serverModule = "github.com/nats-io/nats-server/v2"

// serverBinary returns the nats-server binary, building it once per test
// process if it is not cached yet.
func serverBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binary, buildErr = buildServer() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// buildServer builds nats-server, at the version go.mod requires, into the
// user's cache directory, beside the Qdrant binary of
// scripts/install-qdrant.sh, so that test processes share one build and
// leave nothing behind. It builds into a directory of its own and renames,
// so concurrent test processes never run a half-written binary. A module
// replaced by a local directory has no version to key the cache by and is
// rebuilt every time.
func buildServer() (string, error) {
	version, cacheable, err := moduleVersion(serverModule)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("nats-server cache: %w", err)
	}
	dir := filepath.Join(cache, "ragpipe", "nats-server-"+version)
	path := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(path); err == nil && cacheable {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nats-server cache: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("nats-server cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, "nats-server")
	if out, err := exec.Command("go", "build", "-o", built, serverModule).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %v\n%s", err, out)
	}
	if err := os.Rename(built, path); err != nil {
		return "", fmt.Errorf("nats-server cache: %w", err)
	}
	return path, nil
}

// moduleVersion is the version of module in this project's build list,
// and whether it names a release (it does not for a local replacement).
// Test binaries carry no dependency versions, so it asks the go command.
func moduleVersion(module string) (string, bool, error) {
	out, err := exec.Command("go", "list", "-m", "-f",
		"{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}", module).Output()
	if err != nil {
		return "", false, fmt.Errorf("version of %s: %w", module, err)
	}
	if v := strings.TrimSpace(string(out)); v != "" {
		return v, true, nil
	}
	return "local", false, nil
}

// StartCluster starts n nats-server processes on loopback forming one
// JetStream cluster, waits until JetStream answers, and kills them when the
// test ends.
func StartCluster(t testing.TB, n int) []*Process {
	t.Helper()
	bin := serverBinary(t)
	ports := freePorts(t, 2*n) // distinct: ports picked one at a time may repeat
	ps := make([]*Process, n)
	var routes []string
	for i := range ps {
		ps[i] = &Process{name: fmt.Sprintf("n%d", i+1), port: ports[2*i], clusterPort: ports[2*i+1], dir: t.TempDir()}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ps[i].clusterPort))
	}
	for _, p := range ps {
		p.routes = routes
		p.start(t, bin)
	}
	waitJetStream(t, ClusterURL(ps))
	return ps
}

// ClusterURL is the comma-separated client URL list of ps, as NATS_URL takes it.
func ClusterURL(ps []*Process) string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL()
	}
	return strings.Join(urls, ",")
}

// URL is the server's client URL.
func (p *Process) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

func (p *Process) start(t testing.TB, bin string) {
	t.Helper()
	conf := filepath.Join(p.dir, "server.conf")
	text := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: ragpipe-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, p.name, p.port, filepath.Join(p.dir, "store"), p.clusterPort, strings.Join(p.routes, ", "))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(p.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-c", conf)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
		if t.Failed() {
			if out, err := os.ReadFile(filepath.Join(p.dir, "server.log")); err == nil {
				lines := strings.Split(string(out), "\n")
				t.Logf("natstest: last lines of %s's log:\n%s", p.name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
}

// Kill SIGKILLs the server and waits for it to exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Restart starts a killed server again with the same ports and store.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	p.start(t, serverBinary(t))
	waitJetStream(t, p.URL())
}

// waitJetStream polls url until JetStream answers (a meta leader exists).
func waitJetStream(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			nc, err := nats.Connect(url, nats.Timeout(time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("natstest: JetStream at %s not ready within 60s: %v", url, last)
}

// FreePort returns a TCP port free on loopback at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns k distinct TCP ports free on loopback at the time of
// the call.
func freePorts(t testing.TB, k int) []int {
	t.Helper()
	ports, err := qdrantproc.FreePorts(k)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ragpipe/ragpipe/internal/qdrantproc"
)

const (
	// childReadyTimeout bounds how long a child may take to log that it
	// is ready.
	childReadyTimeout = 60 * time.Second
	// childStopTimeout bounds how long a child may take to exit after
	// SIGTERM before it is killed.
	childStopTimeout = 30 * time.Second
)

// child is a ragpipe process the bench started: a worker, a searcher, the
// NATS floor's consumer or the search floor.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *lineLog
	done chan struct{} // closed once the process has exited
	err  error         // Wait's result, set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// startChild runs `ragpipe <name>` on the bench's NATS and Qdrant with
// collection as its only configured collection and embedder as
// RAGPIPE_EMBEDDER, and waits until it logs ready.
func (r *runner) startChild(ctx context.Context, name, collection, embedder, ready string) (*child, error) {
	cmd := exec.Command(r.cfg.Executable, name)
	cmd.Env = append(slices.Clone(r.cfg.Env), // the last of duplicate keys counts
		"NATS_URL="+r.cfg.NATSURL,
		"QDRANT_URL="+r.cfg.QdrantURL,
		fmt.Sprintf("RAGPIPE_COLLECTIONS=%s:%d:cosine", collection, Dims),
		"RAGPIPE_EMBEDDER="+embedder,
		"RAGPIPE_HTTP_ADDR=127.0.0.1:0",
		"RAGPIPE_LOG_LEVEL=info", // the ready line is logged at info
	)
	return r.startProcess(ctx, name, cmd, ready)
}

// startWorker runs `ragpipe worker` for collection with embedder (see
// startChild) and waits until it consumes.
func (r *runner) startWorker(ctx context.Context, collection, embedder string) (*child, error) {
	return r.startChild(ctx, "worker", collection, embedder, "worker consuming")
}

// startProcess starts cmd, named name in errors and progress, and waits
// until it writes a line containing ready.
func (r *runner) startProcess(ctx context.Context, name string, cmd *exec.Cmd, ready string) (*child, error) {
	c := &child{name: name, cmd: cmd, log: newLineLog(ready), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := qdrantproc.StartChild(cmd); err != nil {
		return nil, err
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	timer := time.NewTimer(childReadyTimeout)
	defer timer.Stop()
	select {
	case <-c.log.seen:
		r.progressf("%s started (pid %d)", name, cmd.Process.Pid)
		return c, nil
	case <-c.done:
		return nil, c.exitError()
	case <-ctx.Done():
		_ = c.stop()
		return nil, ctx.Err()
	case <-timer.C:
		_ = c.stop()
		return nil, fmt.Errorf("%s did not log %q within %s; last line: %s", name, ready, childReadyTimeout, c.log.last())
	}
}

// pid is the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exitError describes the exit of a child that was not asked to stop.
func (c *child) exitError() error {
	if c.err == nil {
		return fmt.Errorf("%s exited unexpectedly; last line: %s", c.name, c.log.last())
	}
	return fmt.Errorf("%s exited: %w; last line: %s", c.name, c.err, c.log.last())
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// childStopTimeout. It returns an error unless the process exited 0 in
// time. Only the first call acts; later ones return its result.
func (c *child) stop() error {
	c.stopOnce.Do(func() {
		select {
		case <-c.done: // it exited by itself
			c.stopErr = c.exitError()
			return
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(childStopTimeout)
		defer timer.Stop()
		select {
		case <-c.done:
			if c.err != nil {
				c.stopErr = fmt.Errorf("%s exited after SIGTERM: %w; last line: %s", c.name, c.err, c.log.last())
			}
		case <-timer.C:
			_ = c.cmd.Process.Kill()
			<-c.done
			c.stopErr = fmt.Errorf("%s ignored SIGTERM for %s and was killed", c.name, childStopTimeout)
		}
	})
	return c.stopErr
}

// lineLog keeps the last line a child wrote and tells when a line
// containing a given text has appeared. It is safe for concurrent use.
type lineLog struct {
	mark string
	seen chan struct{} // closed when a line containing mark has been written

	mu         sync.Mutex
	partial    []byte    // the unfinished last line
	lastLine   string    // the last complete line
	markedLine string    // the first line containing mark
	markedAt   time.Time // when it was written
	marked     bool
}

func newLineLog(mark string) *lineLog {
	return &lineLog{mark: mark, seen: make(chan struct{})}
}

// Write implements io.Writer.
func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.lastLine = string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if !l.marked && strings.Contains(l.lastLine, l.mark) {
			l.marked, l.markedLine, l.markedAt = true, l.lastLine, time.Now()
			close(l.seen)
		}
	}
}

// last returns the last complete line, or a note that there is none.
func (l *lineLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastLine == "" {
		return "(no output)"
	}
	return l.lastLine
}

// readyLine returns the first line containing the mark, "" before it.
func (l *lineLog) readyLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.markedLine
}

// readyAt returns when the first line containing the mark was written,
// the zero time before it.
func (l *lineLog) readyAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.markedAt
}

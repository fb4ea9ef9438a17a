package bench

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// The search floor: a process that answers each request on its subject by
// sending the request's bytes, as they are, to Qdrant's Points/Query, and
// Qdrant's answer, as it is, back. It decodes, embeds, converts and encodes
// nothing. A search service reached over NATS from a process of its own
// does at least this for every search, so the search floor's p50 less the
// raw Query's is an overhead no such service goes under on the same
// machine.

// SearchFloorChildArg, as the first argument of `ragpipe bench`, makes the
// process the search floor (RunSearchFloorChild) instead of a bench: an
// internal mode the bench starts itself, not meant to be run by hand.
const SearchFloorChildArg = "internal-search-floor"

// searchFloorReady is the line the search floor writes once it serves.
const searchFloorReady = "search floor: serving"

// startSearchFloor runs the search floor (this binary, bench
// SearchFloorChildArg) on subject, on the bench's NATS and Qdrant, and
// waits until it serves.
func (r *runner) startSearchFloor(ctx context.Context, subject string) (*child, error) {
	cmd := exec.Command(r.cfg.Executable, "bench", SearchFloorChildArg, subject)
	cmd.Env = append(slices.Clone(r.cfg.Env), "NATS_URL="+r.cfg.NATSURL, "QDRANT_URL="+r.cfg.QdrantURL)
	return r.startProcess(ctx, "search floor", cmd, searchFloorReady)
}

// CheckSearchFloorChildArgs reports whether args are RunSearchFloorChild's,
// so that a caller can refuse them before connecting.
func CheckSearchFloorChildArgs(args []string) error {
	if len(args) != 1 || args[0] == "" {
		return fmt.Errorf("%s: want SUBJECT, got %q", SearchFloorChildArg, args)
	}
	return nil
}

// RunSearchFloorChild is the search floor, run by `ragpipe bench
// SearchFloorChildArg SUBJECT` (args are those after SearchFloorChildArg):
// it subscribes to SUBJECT on nc and answers each request with Qdrant's
// answer to the request's bytes sent as a QueryPoints through qc (the
// answer's bytes, a QueryResponse), or with a NATS micro error 500 when
// Qdrant fails. Each request is handed off from the subscription to a
// goroutine of its own, as the searcher hands its requests to its
// handlers, so that requests are answered concurrently. It writes
// searchFloorReady to out once it serves, and returns when ctx ends.
func RunSearchFloorChild(ctx context.Context, nc *nats.Conn, qc *qdrant.Client, args []string, out io.Writer) error {
	if err := CheckSearchFloorChildArgs(args); err != nil {
		return err
	}
	sub, err := nc.Subscribe(args[0], func(m *nats.Msg) {
		go func() {
			if err := forwardQuery(ctx, qc.GetGrpcClient().Conn(), m); err != nil {
				fmt.Fprintf(out, "search floor: %v\n", err)
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("%s: subscribe to %s: %w", SearchFloorChildArg, args[0], err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes next
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("%s: subscribe to %s: %w", SearchFloorChildArg, args[0], err)
	}
	fmt.Fprintln(out, searchFloorReady)
	<-ctx.Done()
	return nil
}

// forwardQuery sends m's data as a QueryPoints to Qdrant on conn and
// answers m with the reply's bytes, or with an error 500.
func forwardQuery(ctx context.Context, conn grpc.ClientConnInterface, m *nats.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, searchTimeout)
	defer cancel()
	var reply []byte
	if err := conn.Invoke(ctx, qdrant.Points_Query_FullMethodName, &m.Data, &reply, grpc.ForceCodecV2(rawCodec{})); err != nil {
		text := strings.Join(strings.Fields(err.Error()), " ") // one line: it is a header
		answer := nats.NewMsg(m.Reply)
		answer.Header.Set(micro.ErrorCodeHeader, "500")
		answer.Header.Set(micro.ErrorHeader, text)
		answer.Data = []byte(text)
		return m.RespondMsg(answer)
	}
	return m.Respond(reply)
}

// rawCodec is the search floor's gRPC codec: it sends a *[]byte's bytes as
// they are and receives a reply's bytes into one. Its empty name keeps the
// proto codec's content-type ("application/grpc").
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("search floor: raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("search floor: raw codec cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "" }

package integration_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// local is ragpipe's ingestion parts built inside the test process, against
// real servers, for tests that need to reach into them.
type local struct {
	js       jetstream.JetStream
	qdrant   *qdranttest.Node
	store    *qdrantstore.Store
	register *lww.Register
	embedder *embedder.Hash // 16 dimensions
}

// newLocal starts NATS and Qdrant and connects the sink (cfg's Host and Port
// are filled in) and the version register to them.
func newLocal(t testing.TB, cfg qdrantstore.Config) *local {
	t.Helper()
	ns := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	node := qdranttest.Start(t)
	cfg.Host, cfg.Port = "127.0.0.1", node.GRPCPort()
	store, err := qdrantstore.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	register, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := embedder.NewHash(16)
	if err != nil {
		t.Fatal(err)
	}
	return &local{js: js, qdrant: node, store: store, register: register, embedder: emb}
}

// newStage builds a stage over l's store and register from cfg's other
// fields and sets up its collections. Embedder defaults to l's hash embedder,
// Chunker to chunks of 300 characters overlapping by 30.
func (l *local) newStage(t testing.TB, cfg ingest.StageConfig) *ingest.Stage {
	t.Helper()
	cfg.Sink, cfg.Versions = l.store, l.register
	if cfg.Embedder == nil {
		cfg.Embedder = l.embedder
	}
	if cfg.Chunker == nil {
		c, err := pipeline.NewChunker(300, 30)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Chunker = c
	}
	stage, err := ingest.NewStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return stage
}

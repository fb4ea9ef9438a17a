package generation_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// open opens a Registry on nc and closes it when the test ends.
func open(t testing.TB, nc *nats.Conn, replicas int) *generation.Registry {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := generation.Open(ctx, js, generation.Config{Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// checkFor polls fn until it returns nil or d has passed.
func checkFor(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gen(collection string, n int) generation.Generation {
	return generation.Generation{
		Name: generation.Name(collection, n), Number: n, Dims: 8, Distance: pipeline.Cosine,
		ChunkSize: 2000, ChunkOverlap: 200,
	}
}

// serve is an Update function that makes g serve.
func serve(g generation.Generation) func(*generation.State, bool) error {
	return func(s *generation.State, _ bool) error {
		s.Serving = g
		return nil
	}
}

func TestRegistry(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	a := open(t, natstest.Connect(t, srv), 1)
	b := open(t, natstest.Connect(t, srv), 1)

	if _, ok := a.Cached("docs"); ok {
		t.Fatal("Cached: a State in an empty bucket")
	}
	if _, ok, err := a.Current(ctx, "docs"); ok || err != nil {
		t.Fatalf("Current of an empty bucket: ok %v, err %v", ok, err)
	}

	var sawExists []bool
	s, err := a.Update(ctx, "docs", func(s *generation.State, exists bool) error {
		sawExists = append(sawExists, exists)
		if s.Collection != "docs" {
			t.Errorf("Update of a missing State: collection %q, want docs", s.Collection)
		}
		s.Serving = gen("docs", 1)
		s.Job = &generation.Job{ID: "j1", Action: generation.Build, Phase: generation.Waiting, Target: new(gen("docs", 2))}
		return nil
	})
	if err != nil || s.Revision == 0 || s.Serving.Name != "docs__g1" {
		t.Fatalf("Update: %+v, %v", s, err)
	}
	if len(sawExists) != 1 || sawExists[0] {
		t.Errorf("Update's function saw exists %v, want [false]", sawExists)
	}
	// The updating process sees its own update at once, others once watched.
	if c, ok := a.Cached("docs"); !ok || c.Revision != s.Revision {
		t.Errorf("Cached after Update: %+v, %v; want revision %d", c, ok, s.Revision)
	}
	checkFor(t, 5*time.Second, func() error {
		if c, ok := b.Cached("docs"); !ok || c.Revision != s.Revision || c.Job.Target.Name != "docs__g2" {
			return errors.New("the other registry's watch has not seen the update")
		}
		return nil
	})
	cur, ok, err := b.Current(ctx, "docs")
	if err != nil || !ok || cur.Revision != s.Revision || cur.Collection != "docs" || cur.Serving != gen("docs", 1) {
		t.Fatalf("Current: %+v, %v, %v", cur, ok, err)
	}

	// Cached hands out copies: changing one changes nothing cached.
	c, _ := a.Cached("docs")
	c.Job.Phase = generation.Failed
	c.Job.Target.Name = "mangled"
	if c, _ := a.Cached("docs"); c.Job.Phase != generation.Waiting || c.Job.Target.Name != "docs__g2" {
		t.Error("changing a State Cached returned changed the cache")
	}

	// ErrNoChange writes nothing; other errors come back as they are.
	same, err := a.Update(ctx, "docs", func(*generation.State, bool) error { return generation.ErrNoChange })
	if err != nil || same.Revision != s.Revision {
		t.Errorf("Update with ErrNoChange: revision %d, %v; want %d, nil", same.Revision, err, s.Revision)
	}
	refused := errors.New("refused")
	if _, err := a.Update(ctx, "docs", func(*generation.State, bool) error { return refused }); !errors.Is(err, refused) {
		t.Errorf("Update's function error: got %v", err)
	}
	if cur, _, _ := a.Current(ctx, "docs"); cur.Revision != s.Revision {
		t.Errorf("revision %d after updates that changed nothing, want %d", cur.Revision, s.Revision)
	}

	// A second collection, and All in order.
	if _, err := b.Update(ctx, "alpha", serve(gen("alpha", 3))); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if all := a.All(); len(all) != 2 || all[0].Collection != "alpha" || all[1].Collection != "docs" {
			return errors.New("All does not list alpha and docs")
		}
		return nil
	})

	// A registry opened later loads what is there before Open returns.
	if c, ok := open(t, natstest.Connect(t, srv), 1).Cached("alpha"); !ok || c.Serving.Number != 3 {
		t.Errorf("a registry opened later: alpha %+v, %v", c, ok)
	}

	// A deleted State is gone everywhere; the next Update creates it anew.
	js, _ := jetstream.New(natstest.Connect(t, srv))
	kv, err := js.KeyValue(ctx, generation.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Current(ctx, "alpha"); ok || err != nil {
		t.Errorf("Current of a deleted State: ok %v, err %v", ok, err)
	}
	checkFor(t, 5*time.Second, func() error {
		if _, ok := a.Cached("alpha"); ok {
			return errors.New("Cached still has a deleted State")
		}
		return nil
	})
	s, err = a.Update(ctx, "alpha", func(s *generation.State, exists bool) error {
		if exists || s.Serving.Name != "" {
			t.Errorf("Update of a deleted State: exists %v, %+v", exists, s)
		}
		s.Serving = gen("alpha", 4)
		return nil
	})
	if err != nil || s.Serving.Number != 4 {
		t.Fatalf("Update of a deleted State: %+v, %v", s, err)
	}
	if err := kv.Purge(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Current(ctx, "alpha"); ok || err != nil {
		t.Errorf("Current of a purged State: ok %v, err %v", ok, err)
	}

	if _, _, err := a.Current(ctx, "no.such>key"); err == nil {
		t.Error("Current of a name that is no collection: no error")
	}
}

// TestRegistryReadOnly: a read-only registry opened before the bucket
// exists has no States, follows the bucket once a writer creates it, and
// cannot update.
func TestRegistryReadOnly(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ro, err := generation.Open(ctx, js, generation.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ro.Close() })
	if _, ok, err := ro.Current(ctx, "docs"); ok || err != nil {
		t.Errorf("Current without a bucket: ok %v, err %v", ok, err)
	}
	if _, err := ro.Update(ctx, "docs", serve(gen("docs", 1))); err == nil {
		t.Error("a read-only registry updated")
	}
	if _, err := js.KeyValue(ctx, generation.Bucket); err == nil {
		t.Error("a read-only registry created the bucket")
	}
	w := open(t, natstest.Connect(t, srv), 1)
	s, err := w.Update(ctx, "docs", serve(gen("docs", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := ro.Current(ctx, "docs"); !ok || err != nil || got.Revision != s.Revision {
		t.Errorf("Current: %+v, %v, %v", got, ok, err)
	}
	checkFor(t, 10*time.Second, func() error {
		if c, ok := ro.Cached("docs"); !ok || c.Revision != s.Revision {
			return errors.New("the read-only registry does not follow the bucket created after it opened")
		}
		return nil
	})

	// Closing one that still waits for the bucket returns.
	other := natstest.Start(t)
	ojs, _ := jetstream.New(natstest.Connect(t, other))
	waiting, err := generation.Open(ctx, ojs, generation.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := waiting.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRegistryConcurrentUpdates: updates racing from two connections each
// apply once; none is lost.
func TestRegistryConcurrentUpdates(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	regs := []*generation.Registry{open(t, natstest.Connect(t, srv), 1), open(t, natstest.Connect(t, srv), 1)}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			for range each {
				_, err := regs[i%2].Update(ctx, "docs", func(s *generation.State, exists bool) error {
					if !exists {
						s.Serving = gen("docs", 1)
						s.Job = &generation.Job{ID: "count"}
					}
					s.Job.Copied++
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, ok, err := regs[0].Current(ctx, "docs")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if s.Job.Copied != workers*each {
		t.Errorf("%d updates applied, want %d", s.Job.Copied, workers*each)
	}
}

// TestRegistryCluster: on a three-node cluster with the bucket replicated
// three times, Current through any node sees the update made just before
// through another.
func TestRegistryCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx := t.Context()
	nodes := natstest.StartCluster(t, 3)
	conns := make([]*nats.Conn, len(nodes))
	for i, n := range nodes {
		nc, err := nats.Connect(n.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns[i] = nc
	}
	regs := make([]*generation.Registry, len(conns))
	for i, nc := range conns {
		regs[i] = open(t, nc, 3)
	}
	const rounds = 100
	var reading time.Duration
	for i := range rounds {
		writer, reader := regs[i%3], regs[(i+1)%3]
		s, err := writer.Update(ctx, "docs", func(s *generation.State, _ bool) error {
			s.Serving = gen("docs", i+1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got, ok, err := reader.Current(ctx, "docs")
		reading += time.Since(start)
		if err != nil || !ok {
			t.Fatalf("round %d: Current: ok %v, %v", i, ok, err)
		}
		if got.Revision != s.Revision || got.Serving.Number != i+1 {
			t.Fatalf("round %d: Current through another node saw revision %d (generation %d), want %d (%d)",
				i, got.Revision, got.Serving.Number, s.Revision, i+1)
		}
	}
	t.Logf("Current through a node other than the writer's: %v per read, over %d reads", reading/rounds, rounds)
	// Every node's watch catches up.
	checkFor(t, 10*time.Second, func() error {
		for i, r := range regs {
			if c, ok := r.Cached("docs"); !ok || c.Serving.Number != rounds {
				return errors.New("node " + nodes[i].URL() + ": the watch has not caught up")
			}
		}
		return nil
	})
}

// BenchmarkCurrent measures one linearizable read on a one-node server.
func BenchmarkCurrent(b *testing.B) {
	srv := natstest.Start(b)
	r := open(b, natstest.Connect(b, srv), 1)
	ctx := context.Background()
	if _, err := r.Update(ctx, "docs", serve(gen("docs", 1))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, ok, err := r.Current(ctx, "docs"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkCached measures the read the Stage's routing makes.
func BenchmarkCached(b *testing.B) {
	srv := natstest.Start(b)
	r := open(b, natstest.Connect(b, srv), 1)
	if _, err := r.Update(context.Background(), "docs", serve(gen("docs", 1))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, ok := r.Cached("docs"); !ok {
			b.Fatal("no State")
		}
	}
}

// BenchmarkUpdate measures one compare-and-set update without contention
// on a one-node server: a leader read and a conditional write.
func BenchmarkUpdate(b *testing.B) {
	srv := natstest.Start(b)
	r := open(b, natstest.Connect(b, srv), 1)
	ctx := context.Background()
	for b.Loop() {
		if _, err := r.Update(ctx, "docs", func(s *generation.State, _ bool) error {
			s.Serving = gen("docs", 1)
			s.Job = &generation.Job{ID: "j", Phase: generation.Copying}
			s.Job.Copied++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

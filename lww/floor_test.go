package lww_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestFloor checks the floor against a real register and the embedded
// store: the register's highest entry (a deleted document's version lives
// only there), or the store's highest point, whichever is higher.
func TestFloor(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	store, err := localstore.Open(t.Context(), localstore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	expect := func(want uint64) {
		t.Helper()
		if got, err := r.Floor(t.Context(), store); err != nil || got != want {
			t.Fatalf("Floor = %d, %v; want %d", got, err, want)
		}
	}
	expect(0) // nothing anywhere; the register holds only its marker
	for _, c := range []string{"a", "b"} {
		if err := store.EnsureCollection(t.Context(), pipeline.Collection{Name: c, Dims: 2}, true); err != nil {
			t.Fatal(err)
		}
	}
	expect(0)
	claim := func(key string, v uint64) {
		t.Helper()
		if _, err := r.Claim(t.Context(), key, v); err != nil {
			t.Fatal(err)
		}
	}
	claim("a.u.d1", 40)
	claim("a.u.d1", 12) // stale: the entry keeps 40
	claim("a.u.d2", 7)
	expect(40)
	write := func(coll string, v uint64) {
		t.Helper()
		err := store.Apply(t.Context(), coll, []pipeline.DocWrite{{UserID: "u", DocID: "x", Version: v, Points: []pipeline.Point{{
			ID: pipeline.PointID("u", "x", 0), Vector: []float32{1, 0}, UserID: "u", DocID: "x", ChunkCount: 1, Version: v,
		}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	write("b", 55) // copied by migrate: no register entry
	expect(55)
	claim("b.u.gone", 90) // a delete: only the register has it
	expect(90)
}

// TestRegisterMaxVersionScan reads a register of many entries, written as
// claims write them, and prints how long the scan takes.
func TestRegisterMaxVersionScan(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50000
	for i := range n {
		v := uint64(i%977)*1000 + uint64(i)
		if _, err := js.PublishAsync("rag.version.c.u.d"+strconv.Itoa(i), strconv.AppendUint(nil, v, 10)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 { // stay below the client's limit of outstanding publishes
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				t.Fatal("publishes not acknowledged")
			}
		}
	}
	want := uint64(0)
	for i := range n {
		want = max(want, uint64(i%977)*1000+uint64(i))
	}
	start := time.Now()
	got, err := r.MaxVersion(t.Context())
	took := time.Since(start)
	if err != nil || got != want {
		t.Fatalf("MaxVersion = %d, %v; want %d", got, err, want)
	}
	t.Logf("read %d register entries in %v (%.0f entries/s)", n, took.Round(time.Millisecond), n/took.Seconds())
}

// TestRegisterMaxVersionBadEntry: an entry that is no version fails the
// floor rather than being left out of it.
func TestRegisterMaxVersionBadEntry(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), "rag.version.c.u.bad", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.MaxVersion(t.Context()); err == nil {
		t.Fatal("MaxVersion of a register holding \"x\": no error")
	}
}

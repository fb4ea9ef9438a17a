package lww_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/lww"
)

func TestRegisterExport(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	export := func(r *lww.Register, collection string) map[string]uint64 {
		t.Helper()
		got := map[string]uint64{}
		if err := r.Export(t.Context(), collection, func(key string, v uint64) error {
			got[key] = v
			return nil
		}); err != nil {
			t.Fatalf("Export(%s): %v", collection, err)
		}
		return got
	}
	if got := export(r, "docs"); len(got) != 0 {
		t.Fatalf("Export of an empty register = %v", got)
	}
	want := map[string]uint64{}
	for i := range 300 {
		key := lww.Key("docs", "alice", fmt.Sprint("d", i))
		for _, v := range []uint64{uint64(i + 1), uint64(i + 5)} { // the newest entry is exported
			if _, err := r.Claim(t.Context(), key, v); err != nil {
				t.Fatal(err)
			}
		}
		want[key] = uint64(i + 5)
	}
	if _, err := r.Claim(t.Context(), lww.Key("other", "alice", "d1"), 7); err != nil {
		t.Fatal(err)
	}
	if got := export(r, "docs"); !maps.Equal(got, want) {
		t.Fatalf("Export(docs) = %d entries, want %d", len(got), len(want))
	}

	// Restored elsewhere, the entries come back; an entry already there
	// stays, higher or lower.
	js2 := jetStream(t, natstest.Start(t).ClientURL())
	r2, err := lww.NewRegister(t.Context(), js2, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	high := lww.Key("docs", "alice", "d0")
	if _, err := r2.Claim(t.Context(), high, 1000); err != nil {
		t.Fatal(err)
	}
	low := lww.Key("docs", "alice", "d1")
	if _, err := r2.Claim(t.Context(), low, 1); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		done, err := r2.Restore(t.Context(), k, v)
		if err != nil || done == (k == high || k == low) {
			t.Fatalf("Restore(%s, %d) = %t, %v", k, v, done, err)
		}
	}
	want[high], want[low] = 1000, 1
	if got := export(r2, "docs"); !maps.Equal(got, want) {
		t.Fatalf("after import, Export(docs) differs: %d entries, want %d", len(got), len(want))
	}
}

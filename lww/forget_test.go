package lww_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestRegisterForget checks that Forget removes exactly one tenant's
// entries, in every collection, counts them, finds nothing the second time,
// and lets the tenant's documents be claimed again from version 1.
func TestRegisterForget(t *testing.T) {
	r, err := lww.NewRegister(t.Context(), jetStream(t, natstest.Start(t).ClientURL()), "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, d := range []struct {
		user, coll string
		docs       int
	}{{"alice", "docs", 3}, {"alice", "notes", 2}, {"bob", "docs", 2}, {"alice_2", "docs", 1}} {
		for i := range d.docs {
			key := lww.Key(d.coll, d.user, fmt.Sprint("doc", i))
			if _, err := r.Claim(t.Context(), key, 7); err != nil {
				t.Fatal(err)
			}
			keys[d.user] = append(keys[d.user], key)
		}
	}
	latest := func(user string, want uint64) {
		t.Helper()
		got, err := r.Latest(t.Context(), keys[user])
		if err != nil || slices.ContainsFunc(got, func(v uint64) bool { return v != want }) {
			t.Fatalf("Latest(%s) = %v, %v; want %d for each", user, got, err, want)
		}
	}
	forget := func(user string, want uint64) {
		t.Helper()
		if n, err := r.Forget(t.Context(), user); err != nil || n != want {
			t.Fatalf("Forget(%s) = %d, %v; want %d", user, n, err, want)
		}
	}
	forget("alice", 5)
	latest("alice", 0)
	latest("bob", 7)
	latest("alice_2", 7)
	forget("alice", 0)

	got, err := r.Claim(t.Context(), keys["alice"][0], 1)
	if want := (lww.Claimed{Held: true, Latest: 1, First: true}); err != nil || got != want {
		t.Fatalf("Claim at version 1 after Forget = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "*", ">", "a.b"} {
		if _, err := r.Forget(t.Context(), bad); !pipeline.IsPermanent(err) {
			t.Errorf("Forget(%q): %v, want a permanent error", bad, err)
		}
	}
	latest("bob", 7)
}

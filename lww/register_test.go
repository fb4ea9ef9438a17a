package lww_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/lww"
)

// jetStream connects to url.
func jetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestRegisterClaims(t *testing.T) {
	r, err := lww.NewRegister(t.Context(), jetStream(t, natstest.Start(t).ClientURL()), "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(key string, v uint64, want lww.Claimed) {
		t.Helper()
		got, err := r.Claim(t.Context(), key, v)
		if err != nil || got != want {
			t.Fatalf("Claim(%s, %d) = %+v, %v; want %+v", key, v, got, err, want)
		}
	}
	// Enough new documents that the register tries the one-trip claim, then
	// enough known ones that it stops; each answer must be right either way.
	for round := range 2 {
		for i := range 100 {
			key := fmt.Sprint("c.u.d", i)
			if round == 0 {
				claim(key, 5, lww.Claimed{Held: true, Latest: 5, First: true})
				continue
			}
			claim(key, 5, lww.Claimed{Held: true, Latest: 5}) // redelivered
			claim(key, 3, lww.Claimed{Latest: 5})             // stale
			claim(key, 9, lww.Claimed{Held: true, Latest: 9}) // newer
			claim(key, 9, lww.Claimed{Held: true, Latest: 9}) // again
			claim(key+"x", 2, lww.Claimed{Held: true, Latest: 2, First: true})
		}
	}
}

// newRegister returns a register on a new server: one that reads with
// direct gets, or, when direct is false, one whose stream an earlier
// ragpipe created without them, which reads from the stream leader.
func newRegister(t *testing.T, direct bool) *lww.Register {
	t.Helper()
	js := jetStream(t, natstest.Start(t).ClientURL())
	if !direct {
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: lww.RegisterStream, Subjects: []string{"rag.version.>"}, MaxMsgsPerSubject: 1,
		}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRegisterLatest reads many documents at once, some never claimed, from
// a register of one replica (one direct get per 1,024 documents) and from a
// register whose stream an earlier ragpipe created without direct gets (one
// read per document): both must see every claim.
func TestRegisterLatest(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprint("direct=", direct), func(t *testing.T) {
			r := newRegister(t, direct)
			keys := make([]string, 2500)
			for i := range keys {
				keys[i] = fmt.Sprint("c.u.d", i)
				if i%3 != 0 {
					if _, err := r.Claim(t.Context(), keys[i], uint64(i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := r.Latest(t.Context(), keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if want := uint64(i) * min(uint64(i%3), 1); v != want {
					t.Fatalf("Latest of %s = %d, want %d", keys[i], v, want)
				}
			}
			if got, err := r.Latest(t.Context(), []string{"c.u.none"}); err != nil || got[0] != 0 {
				t.Fatalf("Latest of a key never claimed = %v, %v", got, err)
			}
			if got, err := r.Latest(t.Context(), []string{keys[1], keys[2], keys[1]}); err != nil || !slices.Equal(got, []uint64{1, 2, 1}) {
				t.Fatalf("Latest of a key asked for twice = %v, %v; want [1 2 1]", got, err)
			}
		})
	}
}

// TestRegisterRefusesDirectReplicas: on a replicated stream any replica may
// answer a direct get, missing recent claims, so such a stream is refused.
func TestRegisterRefusesDirectReplicas(t *testing.T) {
	js := jetStream(t, natstest.ClusterURL(natstest.StartCluster(t, 3)))
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: lww.RegisterStream, Subjects: []string{"rag.version.>"}, Replicas: 3, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := lww.NewRegister(t.Context(), js, "rag", 3)
	if err == nil || !strings.Contains(err.Error(), "allow_direct") {
		t.Fatalf("NewRegister on a replicated stream with direct gets: %v", err)
	}
}

// TestRegisterLatestWithMirror: a mirror of RAG_VERSIONS with mirror_direct
// answers direct gets from its own, possibly late copy; reads must still
// see every acknowledged claim.
func TestRegisterLatestWithMirror(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "RAG_VERSIONS_BACKUP",
		Mirror: &jetstream.StreamSource{Name: lww.RegisterStream}, MirrorDirect: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		key := fmt.Sprint("c.u.d", i)
		if _, err := r.Claim(t.Context(), key, 7); err != nil {
			t.Fatal(err)
		}
		if got, err := r.Latest(t.Context(), []string{key, "c.u.none"}); err != nil || got[0] != 7 || got[1] != 0 {
			t.Fatalf("Latest right after the claim of %s = %v, %v; want [7 0]", key, got, err)
		}
	}
}

// TestRegisterClaimMany claims batches against a register that reads with
// direct gets and one that reads from the stream leader: new, known, stale,
// redelivered and repeated keys, and two writers claiming the same keys at
// once, whose compare-and-set publishes conflict. Every outcome must be
// what one Claim at a time, in some order, gives (memVersions).
func TestRegisterClaimMany(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprint("direct=", direct), func(t *testing.T) {
			r := newRegister(t, direct)
			model := newMemVersions()
			for round := range 6 {
				var keys []string
				var versions []uint64
				for i := range 300 {
					keys = append(keys, fmt.Sprint("c.u.d", i%(100*(round+1))))
					versions = append(versions, uint64(1+(i*7+round*13)%10))
				}
				claims, errs := r.ClaimMany(t.Context(), keys, versions, 1+round*20)
				for i := range keys {
					if errs[i] != nil {
						t.Fatalf("round %d: ClaimMany of %s: %v", round, keys[i], errs[i])
					}
				}
				// A key asked for twice in one call is claimed twice at once,
				// in either order: check against the model in the order that
				// explains the outcome of the first occurrence.
				for i := range keys {
					want, _ := model.Claim(t.Context(), keys[i], versions[i])
					if claims[i] == want {
						continue
					}
					if j := slices.Index(keys[i+1:], keys[i]); j < 0 || versions[i+1+j] <= versions[i] {
						t.Fatalf("round %d: claim of %s at %d = %+v, want %+v", round, keys[i], versions[i], claims[i], want)
					}
				}
			}
			// Two writers at once on the same keys: every claim of a key's
			// highest version is held, and each outcome is consistent.
			keys := make([]string, 200)
			for i := range keys {
				keys[i] = fmt.Sprint("c.u.race", i%50)
			}
			outcomes := make([][]lww.Claimed, 2)
			var wg sync.WaitGroup
			for w := range 2 {
				wg.Go(func() {
					versions := make([]uint64, len(keys))
					for i := range versions {
						versions[i] = uint64(1 + (i+w*3)%7)
					}
					claims, errs := r.ClaimMany(t.Context(), keys, versions, 64)
					for i, err := range errs {
						if err != nil {
							t.Errorf("concurrent ClaimMany of %s: %v", keys[i], err)
						}
					}
					outcomes[w] = claims
				})
			}
			wg.Wait()
			latest, err := r.Latest(t.Context(), keys)
			if err != nil {
				t.Fatal(err)
			}
			top := make(map[string]uint64)
			for w := range outcomes {
				for i, key := range keys {
					top[key] = max(top[key], uint64(1+(i+w*3)%7))
				}
			}
			for w, claims := range outcomes {
				for i, c := range claims {
					v := uint64(1 + (i+w*3)%7)
					if latest[i] != top[keys[i]] || c.Latest > latest[i] || c.Held != (c.Latest == v) || c.Latest < v || (v == latest[i] && !c.Held) {
						t.Fatalf("writer %d: claim of %s at %d = %+v, register at %d", w, keys[i], v, c, latest[i])
					}
				}
			}
		})
	}
}

// TestRegisterClaimManyWithoutStream: with the register's stream gone, no
// one answers the publishes; each claim fails, after the retries, as the
// JetStream client's publish would.
func TestRegisterClaimManyWithoutStream(t *testing.T) {
	js := jetStream(t, natstest.Start(t).ClientURL())
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), lww.RegisterStream); err != nil {
		t.Fatal(err)
	}
	claims, errs := r.ClaimMany(t.Context(), []string{"c.u.a", "c.u.b", "c.u.c"}, []uint64{1, 2, 3}, 2)
	for i, err := range errs {
		if !errors.Is(err, jetstream.ErrNoStreamResponse) || claims[i].Held {
			t.Errorf("claim %d without a stream = %+v, %v; want %v", i, claims[i], err, jetstream.ErrNoStreamResponse)
		}
	}
}

// TestRegisterClaimManyCancelled: a claim whose context is done is not
// sent: it fails with the context's error and the register stays as it was.
func TestRegisterClaimManyCancelled(t *testing.T) {
	r := newRegister(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	keys := []string{"c.u.a", "c.u.b", "c.u.c"}
	claims, errs := r.ClaimMany(ctx, keys, []uint64{1, 2, 3}, 2)
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) || claims[i].Held {
			t.Errorf("claim %d with a cancelled context = %+v, %v; want %v", i, claims[i], err, context.Canceled)
		}
	}
	latest, err := r.Latest(t.Context(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(latest, []uint64{0, 0, 0}) {
		t.Errorf("register after cancelled claims: %v, want nothing", latest)
	}
}

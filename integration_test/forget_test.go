package integration_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/keyring"
)

// forgetReport is the JSON `ragpipe forget --json` prints.
type forgetReport struct {
	UserID      string         `json:"user_id"`
	Key         string         `json:"key"`
	Pending     int            `json:"pending"`
	Parked      int            `json:"parked"`
	Points      map[string]int `json:"points"`
	Versions    int            `json:"versions"`
	DeadLetters int            `json:"dead_letters"`
	Store       string         `json:"store"`
}

// forget runs `ragpipe forget --user user --json` in dir with env added and
// returns its report, failing unless it exits 0 with one.
func (s *system) forget(dir, user string, env ...string) forgetReport {
	s.t.Helper()
	p := s.start("forget", dir, []string{"forget", "--user", user, "--json", "--settle", "100ms"}, env...)
	<-p.done
	out := p.log.String()
	if p.err != nil {
		s.t.Fatalf("forget %s: %v\n%s", user, p.err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		var r forgetReport
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &r) == nil {
			if !strings.Contains(out, "forget "+user+": points:") {
				s.t.Errorf("no progress line of the points step:\n%s", out)
			}
			return r
		}
	}
	s.t.Fatalf("forget %s printed no report:\n%s", user, out)
	return forgetReport{}
}

// TestForget runs `ragpipe forget` against Qdrant with encryption on: the
// tenant's key is destroyed, its points, versions and dead letters are gone,
// the other tenant is untouched, a second run finds nothing, and the tenant
// then starts afresh from version 1 with a fresh key.
func TestForget(t *testing.T) {
	s := newSystem(t)
	s.startWorker("RAGPIPE_COLLECTIONS=docs:8:cosine,notes:8:cosine")
	var events []event
	for _, d := range []struct{ user, coll, doc string }{
		{"alice", "docs", "d1"}, {"alice", "docs", "d2"}, {"alice", "notes", "n1"}, {"bob", "docs", "d1"}, {"bob", "notes", "n1"},
	} {
		events = append(events, event{user: d.user, collection: d.coll, body: map[string]any{"doc_id": d.doc, "text": d.doc + " of " + d.user, "version": 7}})
	}
	events = append(events, event{user: "alice", collection: "docs", raw: []byte("not json")},
		event{user: "bob", collection: "docs", raw: []byte("not json")})
	s.publish(events)
	s.waitDrained(time.Minute)

	master := keyring.NewMasterKey()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(keyFile, []byte(master+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk, err := keyring.ParseMasterKeys([]byte(master))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Open(t.Context(), s.js, mk, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	old, err := keys.Tenant(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal("docs", "d1", 0, "secret")

	encrypted := "RAGPIPE_ENCRYPTION_KEY_FILE=" + keyFile
	r := s.forget("", "alice", encrypted)
	want := fmt.Sprint(forgetReport{UserID: "alice", Key: "destroyed", Points: map[string]int{"docs": 2, "notes": 1},
		Versions: 3, DeadLetters: 1, Store: r.Store})
	if fmt.Sprint(r) != want {
		t.Fatalf("forget: %+v\nwant %s", r, want)
	}
	if _, err := keys.Lookup(t.Context(), "alice"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("Lookup after forget: %v, want ErrForgotten", err)
	}
	s.checkTenants(map[string]map[string]int{"docs": {"bob": 1}, "notes": {"bob": 1}})
	if dl := s.deadLetters(); len(dl) != 1 || !strings.Contains(dl[0].subject, ".bob.") {
		t.Fatalf("dead letters left: %+v, want bob's one", dl)
	}

	r = s.forget("", "alice", encrypted)
	want = fmt.Sprint(forgetReport{UserID: "alice", Key: "none", Points: map[string]int{"docs": 0, "notes": 0}, Store: r.Store})
	if fmt.Sprint(r) != want {
		t.Fatalf("forget again: %+v\nwant %s", r, want)
	}

	// A fresh start: version 1 of a document stored at version 7 before.
	s.publish([]event{{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d1", "text": "again", "version": 1}}})
	s.waitDrained(time.Minute)
	s.checkTenants(map[string]map[string]int{"docs": {"alice": 1, "bob": 1}, "notes": {"bob": 1}})
	fresh, err := keys.Tenant(t.Context(), "alice")
	if err != nil {
		t.Fatalf("a fresh key after forget: %v", err)
	}
	if _, err := fresh.Open("docs", "d1", 0, sealed); !errors.Is(err, keyring.ErrUndecryptable) {
		t.Fatalf("the old key's text under the fresh key: %v, want ErrUndecryptable", err)
	}

	if code, out := run(t, nil, "forget", "--help"); code != 0 || !strings.Contains(out, "-settle") {
		t.Errorf("forget --help: exit %d:\n%s", code, out)
	}
	if code, out := run(t, s.env, "forget", "--user", "al.ice"); code == 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("forget --user al.ice: exit %d, want non-zero and one line:\n%s", code, out)
	}
}

// TestForgetDev runs `ragpipe forget` on the data directory of a stopped
// `ragpipe dev` with encryption on: it runs dev's NATS server (its store
// encrypted) and opens its embedded store by itself, destroys the key dev
// made for the tenant, and dev restarted finds only the other tenant, until
// the tenant publishes again under a fresh key.
func TestForgetDev(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(keyFile, []byte(keyring.NewMasterKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDev(t, "RAGPIPE_COLLECTIONS=docs:8:cosine", "RAGPIPE_EMBEDDER=hash", "RAGPIPE_ENCRYPTION_KEY_FILE="+keyFile)
	d.publish([]event{
		{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d1", "text": "alice one", "version": 4}},
		{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d2", "text": "alice two", "version": 4}},
		{user: "bob", collection: "docs", body: map[string]any{"doc_id": "d1", "text": "bob one", "version": 4}},
	})
	d.waitDrained(time.Minute)
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d after SIGTERM, want 0", code)
	}
	r := d.forget(d.dir, "alice")
	if r.Key != "destroyed" || r.Points["docs"] != 2 || r.Versions != 2 || !strings.Contains(r.Store, "embedded store") {
		t.Fatalf("forget: %+v, want the key destroyed, 2 points and 2 versions of the embedded store", r)
	}
	d.start()
	list := func(user string) (docs map[string]float64) {
		var reply struct {
			Docs []struct {
				DocID   string  `json:"doc_id"`
				Version float64 `json:"version"`
			} `json:"docs"`
		}
		d.request("rag.list."+user+".docs", map[string]any{}, &reply)
		docs = map[string]float64{}
		for _, doc := range reply.Docs {
			docs[doc.DocID] = doc.Version
		}
		return docs
	}
	if a, b := list("alice"), list("bob"); len(a) != 0 || len(b) != 1 {
		t.Fatalf("after forget: alice %v, bob %v; want none and one", a, b)
	}
	d.publish([]event{{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d1", "text": "again", "version": 1}}})
	d.waitDrained(time.Minute)
	if a := list("alice"); len(a) != 1 || a["d1"] != 1 {
		t.Fatalf("alice after publishing again: %v, want d1 at version 1", a)
	}
}

// checkTenants fails unless each collection holds exactly want points per
// tenant.
func (s *system) checkTenants(want map[string]map[string]int) {
	s.t.Helper()
	for coll, tenants := range want {
		got := map[string]int{}
		for _, p := range s.stored(coll) {
			got[fmt.Sprint(p["user_id"])]++
		}
		if fmt.Sprint(got) != fmt.Sprint(tenants) {
			s.t.Errorf("%s: points per tenant %v, want %v", coll, got, tenants)
		}
	}
}

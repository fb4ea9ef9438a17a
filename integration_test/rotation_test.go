package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// TestKeyRotation rotates the master key through the binary, real NATS and
// real Qdrant, as keyring's doc says: documents of two tenants ingested
// under key A; a searcher with B first and A second reads them (A unwraps);
// `ragpipe keys rewrap` re-wraps both tenants' data keys under B; a worker
// and a searcher with B alone read everything in every mode and store a
// third tenant's document under B. A key file with A alone is then refused
// for those tenants: the searcher answers 500 and the worker retries the
// tenant's events, both logging the unknown master key's id, and nothing
// is written.
func TestKeyRotation(t *testing.T) {
	keyA, keyB := keyring.NewMasterKey(), keyring.NewMasterKey()
	idA, idB := masterKeyID(t, keyA), masterKeyID(t, keyB)
	onlyA, bThenA, onlyB := masterKeyFile(t, keyA), masterKeyFile(t, keyB, keyA), masterKeyFile(t, keyB)
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine")
	client := s.searchClient()
	var logs []*process // every process, to check that none prints a key

	w := s.startWorker(onlyA)
	logs = append(logs, w)
	s.publish(secretEvents("docs"))
	s.waitDrained(time.Minute)
	stopProcess(t, w)
	s.assertWrappedBy(map[string]string{"alice": idA, "bob": idA})

	// B wraps, A still unwraps.
	sr := s.startSearcher("searcher B,A", nil, bThenA)
	logs = append(logs, sr)
	assertReadable(t, client, secretDocs)
	want := fmt.Sprintf("2 tenant keys: 2 re-wrapped, 0 already under master key %s, 0 forgotten\n", idB)
	logs = append(logs, s.rewrap(bThenA, want))
	s.assertWrappedBy(map[string]string{"alice": idB, "bob": idB})
	want = fmt.Sprintf("2 tenant keys: 0 re-wrapped, 2 already under master key %s, 0 forgotten\n", idB)
	logs = append(logs, s.rewrap(bThenA, want))
	// The running searcher's keyring saw the entries change and reads them anew.
	assertReadable(t, client, secretDocs)
	stopProcess(t, sr)

	// B alone: the old documents and a new tenant's.
	w, sr = s.startWorker(onlyB), s.startSearcher("searcher B", nil, onlyB)
	logs = append(logs, w, sr)
	assertReadable(t, client, secretDocs)
	carol := struct{ user, doc, text string }{"carol", "c1", "Saffron cardamom lighthouse juniper."}
	s.publish([]event{{user: carol.user, collection: "docs", body: map[string]any{"doc_id": carol.doc, "text": carol.text, "version": 1}}})
	s.waitDrained(time.Minute)
	s.assertWrappedBy(map[string]string{"alice": idB, "bob": idB, "carol": idB})
	assertReadable(t, client, append(secretDocs, carol))
	stopProcess(t, w)
	stopProcess(t, sr)
	before := s.restPoints("docs")

	// A alone: the re-wrapped keys do not unwrap.
	sr = s.startSearcher("searcher A", nil, onlyA)
	logs = append(logs, sr)
	for _, user := range []string{"alice", "bob", "carol"} {
		for _, mode := range []string{"hybrid", "dense", "keyword"} {
			reply, err := client.Search(t.Context(), user, "docs", search.SearchRequest{Query: carol.text, Mode: mode})
			if e, ok := errors.AsType[*search.Error](err); !ok || e.Code != search.CodeInternal {
				t.Errorf("%s, mode %s, master key A alone: reply %+v, error %v; want a 500", user, mode, reply, err)
			}
		}
	}
	assertLoggedUnknown(t, sr, idB)
	w = s.startWorker(onlyA, "RAGPIPE_MAX_DELIVER=2")
	logs = append(logs, w)
	s.publish([]event{{user: "alice", collection: "docs", body: map[string]any{"doc_id": "d1", "text": carol.text, "version": 2}}})
	assertLoggedUnknown(t, w, idB)
	// A deployment problem, not the event's: it is retried beyond
	// RAGPIPE_MAX_DELIVER, never dead-lettered, and /readyz names it.
	base := "http://" + httpAddr(t, w)
	checkfor.Until(t, 30*time.Second, "/readyz naming the tenant's key", func() error {
		return status(base+"/readyz", 503, `encryption key of tenant "alice"`)
	})
	checkfor.Until(t, time.Minute, "the event retried beyond RAGPIPE_MAX_DELIVER", func() error {
		page, err := fetch(base+"/metrics", 200, "")
		if err != nil {
			return err
		}
		if n := metricValue(t, page, `ragpipe_events_total{collection="docs",outcome="retried"}`); n < 3 {
			return fmt.Errorf("%v retries", n)
		}
		return nil
	})
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Errorf("%d events dead-lettered because of the master key file: %s", len(dl), dl[0].header.Get("Ragpipe-Error"))
	}
	if after := s.restPoints("docs"); !pointsEqual(before, after) {
		t.Errorf("master key A alone: the stored points changed:\nbefore %+v\nafter  %+v", before, after)
	}
	for _, p := range logs {
		if out := p.log.String(); strings.Contains(out, keyA) || strings.Contains(out, keyB) {
			t.Errorf("%s: its output holds a master key", strings.Join(p.cmd.Args, " "))
		}
	}
}

// masterKeyFile writes a master key file of keys, the first wrapping, and
// returns the setting naming it.
func masterKeyFile(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "RAGPIPE_ENCRYPTION_KEY_FILE=" + path
}

// masterKeyID returns the id of a master key line.
func masterKeyID(t *testing.T, key string) string {
	t.Helper()
	m, err := keyring.ParseMasterKeys([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return m.Primary()
}

// stopProcess stops p with SIGTERM and fails unless it exits 0.
func stopProcess(t *testing.T, p *process) {
	t.Helper()
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM, want 0", strings.Join(p.cmd.Args, " "), code)
	}
}

// rewrap runs `ragpipe keys rewrap` with the master key file of keySetting
// and fails unless it succeeds and prints want (its counts).
func (s *system) rewrap(keySetting, want string) *process {
	s.t.Helper()
	p := s.start("keys rewrap", "", []string{"keys", "rewrap"}, keySetting)
	<-p.done
	if out := p.log.String(); p.err != nil || !strings.Contains(out, want) {
		s.t.Fatalf("keys rewrap: %v, output %q; want %q", p.err, out, want)
	}
	return p
}

// assertWrappedBy fails unless the RAG_KEYS bucket holds exactly the tenants
// of want, each data key wrapped by the master key of that id.
func (s *system) assertWrappedBy(want map[string]string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.js.KeyValue(ctx, keyring.Bucket)
	if err != nil {
		s.t.Fatal(err)
	}
	tenants, err := kv.Keys(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	got := map[string]string{}
	for _, tenant := range tenants {
		e, err := kv.Get(ctx, tenant)
		if err != nil {
			s.t.Fatal(err)
		}
		var rec keyring.Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			s.t.Fatalf("record of %s: %v", tenant, err)
		}
		got[tenant] = rec.MasterKey
	}
	if !maps.Equal(got, want) {
		s.t.Fatalf("data keys wrapped by %v, want %v", got, want)
	}
}

// assertReadable searches every document's text as its tenant, in every
// mode, and fails unless the document comes first, every hit in clear.
func assertReadable(t *testing.T, client *search.Client, docs []struct{ user, doc, text string }) {
	t.Helper()
	for _, d := range docs {
		for _, mode := range []string{"hybrid", "dense", "keyword"} {
			reply, err := client.Search(t.Context(), d.user, "docs", search.SearchRequest{Query: d.text, Mode: mode, TopK: 10})
			if err != nil {
				t.Fatalf("%s/%s, mode %s: %v", d.user, d.doc, mode, err)
			}
			if h := reply.Hits; len(h) == 0 || h[0].DocID != d.doc || h[0].Text != d.text || anySealed(h) {
				t.Errorf("%s/%s, mode %s: hits %+v, want the document first, every hit in clear", d.user, d.doc, mode, h)
			}
		}
	}
}

func anySealed(hits []pipeline.Hit) bool {
	for _, h := range hits {
		if keyring.IsSealed(h.Text) {
			return true
		}
	}
	return false
}

// assertLoggedUnknown waits until p logs the unknown master key error
// naming the master key id.
func assertLoggedUnknown(t *testing.T, p *process, id string) {
	t.Helper()
	waitLogged(t, p, keyring.ErrUnknownMasterKey.Error())
	if out := p.log.String(); !strings.Contains(out, "wrapped by master key "+id) {
		t.Errorf("%s logged the unknown master key without its id %s:\n%s", strings.Join(p.cmd.Args, " "), id, tail(out, 20))
	}
}

// pointsEqual reports whether two scrolls of a collection hold the same
// points with the same payloads.
func pointsEqual(a, b []restPoint) bool {
	payloads := func(ps []restPoint) map[string]string {
		m := map[string]string{}
		for _, p := range ps {
			raw, _ := json.Marshal(p.Payload)
			m[p.ID] = string(raw)
		}
		return m
	}
	return maps.Equal(payloads(a), payloads(b))
}

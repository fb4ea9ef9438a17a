package integration_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/search"
)

// The example tenants' passwords of deploy/nats/nats.conf (bcrypt hashes
// there), and the service passwords the file takes from the environment.
const (
	alicePassword    = "alice-example-password"
	bobPassword      = "bob-example-password"
	workerPassword   = "workerTestPassword"
	searcherPassword = "searcherTestPassword"
)

// tenantConn is a NATS connection of one user, collecting the errors the
// server sends it asynchronously (permission violations).
type tenantConn struct {
	*nats.Conn
	errs chan error
}

func connectAs(t *testing.T, url, user, password, inboxPrefix string) (*tenantConn, error) {
	t.Helper()
	c := &tenantConn{errs: make(chan error, 64)}
	opts := []nats.Option{nats.UserInfo(user, password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case c.errs <- err:
		default:
		}
	})}
	if inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(inboxPrefix))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c, nil
}

// refused waits for the server's permission violation for op ("Publish" or
// "Subscription") on subject.
func (c *tenantConn) refused(t *testing.T, op, subject string) {
	t.Helper()
	want := "Permissions Violation for " + op + ` to "` + subject + `"`
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if strings.Contains(err.Error(), want) {
				return
			}
		case <-timeout:
			t.Errorf("%s was not refused %s on %s", c.Opts.User, strings.ToLower(op), subject)
			return
		}
	}
}

// TestPermissionsDeployConfig loads deploy/nats/nats.conf, the exact file,
// into the NATS server; runs the worker and the searcher as their users; and
// proves that a tenant is served on its own subjects and refused on another
// tenant's, for ingest, search, list and replies, and that the service users
// hold no more than they need.
func TestPermissionsDeployConfig(t *testing.T) {
	s, url := deploySystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine")
	if _, err := nats.Connect(url); err == nil {
		t.Fatal("an anonymous client could connect")
	}
	if _, err := connectAs(t, url, "alice", bobPassword, ""); err == nil {
		t.Fatal("alice could connect with bob's password")
	}
	s.startWorker("NATS_USER=worker", "NATS_PASSWORD="+workerPassword)
	s.startSearcher("searcher", nil, "NATS_USER=searcher", "NATS_PASSWORD="+searcherPassword)

	alice, err := connectAs(t, url, "alice", alicePassword, "_INBOX.alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := connectAs(t, url, "bob", bobPassword, "_INBOX.bob")
	if err != nil {
		t.Fatal(err)
	}

	// Ingest: each tenant publishes to its own subject through JetStream
	// and gets the acknowledgement on its own inbox.
	for _, c := range []*tenantConn{alice, bob} {
		user := c.Opts.User
		body, _ := json.Marshal(map[string]any{"doc_id": user + "-doc", "text": "the private notes of " + user})
		if _, err := jetstreamOf(t, c).Publish(t.Context(), "rag.ingest."+user+".docs", body); err != nil {
			t.Fatalf("%s publishing its own event: %v", user, err)
		}
	}
	// A bad event is dead-lettered by the worker (its rag.dlq permission).
	if _, err := jetstreamOf(t, alice).Publish(t.Context(), "rag.ingest.alice.docs", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// alice writing into bob's tenant is refused.
	body, _ := json.Marshal(map[string]any{"doc_id": "planted", "text": "the private notes of bob, planted by alice"})
	if err := alice.Publish("rag.ingest.bob.docs", body); err != nil {
		t.Fatal(err)
	}
	alice.refused(t, "Publish", "rag.ingest.bob.docs")
	s.waitDrained(time.Minute)
	if dl := s.deadLetters(); len(dl) != 1 || dl[0].subject != "rag.dlq.alice.docs" {
		t.Errorf("dead letters %v, want the one bad event of alice", dl)
	}

	// Search, list and status: served on one's own subjects, refused on another's.
	for _, tc := range []struct {
		c           *tenantConn
		own, others string
	}{{alice, "alice", "bob"}, {bob, "bob", "alice"}} {
		client := &search.Client{Conn: tc.c.Conn}
		reply, err := client.Search(t.Context(), tc.own, "docs", search.SearchRequest{Query: "private notes of " + tc.others})
		if err != nil || len(reply.Hits) != 1 || reply.Hits[0].DocID != tc.own+"-doc" {
			t.Errorf("%s searching its own documents: %+v, %v; want its one document", tc.own, reply, err)
		}
		list, err := client.List(t.Context(), tc.own, "docs", search.ListRequest{})
		if err != nil || len(list.Docs) != 1 || list.Docs[0].DocID != tc.own+"-doc" {
			t.Errorf("%s listing its own documents: %+v, %v; want only its one document", tc.own, list, err)
		}
		status, err := client.Status(t.Context(), tc.own, "docs", search.StatusRequest{DocIDs: []string{tc.own + "-doc"}})
		if err != nil || len(status.Docs) != 1 || !status.Docs[0].Stored {
			t.Errorf("%s asking the status of its own document: %+v, %v; want stored", tc.own, status, err)
		}
		for _, kind := range []string{"search", "list", "status"} {
			subject := "rag." + kind + "." + tc.others + ".docs"
			if msg, err := tc.c.Request(subject, []byte(`{"query":"notes"}`), time.Second); err == nil {
				t.Errorf("%s got a reply on %s: %s", tc.own, subject, msg.Data)
			}
			tc.c.refused(t, "Publish", subject)
		}
		// Nobody may read another's replies or events.
		for _, subject := range []string{"_INBOX." + tc.others + ".>", "_INBOX.>", "rag.>", "rag.ingest." + tc.others + ".docs", "rag.search.*.*"} {
			if _, err := tc.c.SubscribeSync(subject); err != nil {
				t.Fatal(err)
			}
			tc.c.refused(t, "Subscription", subject)
		}
		for _, subject := range []string{"$JS.API.STREAM.INFO.RAG_INGEST", "rag.dlq." + tc.own + ".docs", "$SRV.PING"} {
			if err := tc.c.Publish(subject, nil); err != nil {
				t.Fatal(err)
			}
			tc.c.refused(t, "Publish", subject)
		}
	}

	// ragpipe query as a tenant: its default inbox is the tenant's own.
	env := []string{"NATS_URL=" + url, "NATS_USER=alice", "NATS_PASSWORD=" + alicePassword}
	if code, out := run(t, env, "query", "--user", "alice", "--collection", "docs", "private notes"); code != 0 || !strings.Contains(out, "alice-doc") {
		t.Errorf("ragpipe query as alice: exit %d:\n%s", code, out)
	}
	if code, out := run(t, env, "query", "--user", "bob", "--collection", "docs", "--timeout", "2s", "private notes"); code == 0 || strings.Contains(out, "bob-doc") {
		t.Errorf("ragpipe query as alice for bob: exit %d:\n%s", code, out)
	}

	// The searcher may only answer (and read two buckets, see
	// TestPermissionsGenerations): it publishes no event and subscribes to
	// no event subject.
	searcher, err := connectAs(t, url, "searcher", searcherPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := searcher.Publish("rag.ingest.alice.docs", body); err != nil {
		t.Fatal(err)
	}
	searcher.refused(t, "Publish", "rag.ingest.alice.docs")
	for _, subject := range []string{"rag.>", "rag.ingest.*.*", "$KV.>", "$JS.API.>"} {
		if _, err := searcher.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		searcher.refused(t, "Subscription", subject)
	}
	// The worker never subscribes to tenant subjects.
	worker, err := connectAs(t, url, "worker", workerPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := worker.SubscribeSync("rag.search.*.*"); err != nil {
		t.Fatal(err)
	}
	worker.refused(t, "Subscription", "rag.search.*.*")
}

// deploySystem starts a NATS server on deploy/nats/nats.conf, the exact
// file, and a Qdrant node; the system's settings (env added) connect to
// that server, and the test's own view of JetStream is the worker's. It
// returns the server's URL.
func deploySystem(t *testing.T, env ...string) (*system, string) {
	t.Helper()
	t.Setenv("RAGPIPE_WORKER_PASSWORD", workerPassword)
	t.Setenv("RAGPIPE_SEARCHER_PASSWORD", searcherPassword)
	ns := natstest.Start(t, func(o *server.Options) {
		conf, err := server.ProcessConfigFile("../deploy/nats/nats.conf")
		if err != nil {
			t.Fatalf("deploy/nats/nats.conf: %v", err)
		}
		conf.Host, conf.Port, conf.StoreDir, conf.NoLog, conf.NoSigs = o.Host, o.Port, o.StoreDir, true, true
		cheapHashes(t, conf.Users)
		*o = *conf
	})
	url := ns.ClientURL()
	s := attach(t, "nats://worker:"+workerPassword+"@"+strings.TrimPrefix(url, "nats://"), qdranttest.Start(t), env...)
	s.nats = ns
	for i, kv := range s.env {
		if strings.HasPrefix(kv, "NATS_URL=") {
			s.env[i] = "NATS_URL=" + url
		}
	}
	return s, url
}

// examplePasswords are the example tenants' passwords by user name.
var examplePasswords = map[string]string{"alice": alicePassword, "bob": bobPassword}

// hashesChecked is set once the file's hashes were checked against
// examplePasswords.
var hashesChecked sync.Once

// cheapHashes checks, once per test binary, that the bcrypt hashes of the
// example tenants in users are those of examplePasswords, then replaces
// them with hashes of the lowest cost: the file's cost (11) takes ~2.5s
// per connection in a process under the race detector, which outlasts
// nats.go's 2s connect timeout and the server's first PING.
func cheapHashes(t *testing.T, users []*server.User) {
	t.Helper()
	hashesChecked.Do(func() {
		for _, u := range users {
			if p, ok := examplePasswords[u.Username]; ok {
				if err := bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(p)); err != nil {
					t.Fatalf("deploy/nats/nats.conf: the hash of %s is not that of its example password: %v", u.Username, err)
				}
			}
		}
	})
	for _, u := range users {
		if p, ok := examplePasswords[u.Username]; ok {
			hash, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			u.Password = string(hash)
		}
	}
}

func jetstreamOf(t *testing.T, c *tenantConn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

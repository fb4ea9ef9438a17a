package main

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/keyring"
)

// TestStoreEncryption takes the embedded server's store from clear to
// encrypted, through a master key rotation, and checks that a store opened
// without its key fails clearly rather than losing its streams.
func TestStoreEncryption(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB, keyC := keyring.NewMasterKey(), keyring.NewMasterKey(), keyring.NewMasterKey()
	keys := func(lines ...string) *keyring.MasterKeys {
		m, err := keyring.ParseMasterKeys([]byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	idA := keys(keyA).Primary()
	// start runs the server on master (nil: no encryption), checks that it
	// holds the words published so far and publishes word.
	var words []string
	start := func(master *keyring.MasterKeys, word string) {
		t.Helper()
		s := startTestServer(t, dir, master)
		defer func() { s.Shutdown(); s.WaitForShutdown() }()
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		stream, err := js.CreateOrUpdateStream(t.Context(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range words {
			m, err := stream.GetMsg(t.Context(), uint64(i+1))
			if err != nil || string(m.Data) != w {
				t.Fatalf("message %d: %v, %v; want %q", i+1, m, err, w)
			}
		}
		if _, err := js.Publish(t.Context(), "t", []byte(word)); err != nil {
			t.Fatal(err)
		}
		words = append(words, word)
	}
	inClear := func() []string {
		t.Helper()
		var found []string
		filepath.WalkDir(filepath.Join(dir, "nats"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				data, _ := os.ReadFile(path)
				for _, w := range words {
					if bytes.Contains(data, []byte(w)) {
						found = append(found, w+" in "+path)
					}
				}
			}
			return nil
		})
		return found
	}

	start(nil, "clearwordone")
	if len(inClear()) == 0 {
		t.Fatal("the clear store does not show its message: the check below proves nothing")
	}
	start(keys(keyA), "secretwordtwo") // the clear store is encrypted as it opens
	if found := inClear(); len(found) > 0 {
		t.Fatalf("clear text on disk after encryption: %v", found)
	}
	for _, tc := range []struct {
		name   string
		master *keyring.MasterKeys
		want   string
	}{
		{"key file unset", nil, "encrypted under master key " + idA + ": set RAGPIPE_ENCRYPTION_KEY_FILE"},
		{"another key", keys(keyB), "encrypted under master key " + idA + ", which is neither"},
		{"the key third", keys(keyB, keyC, keyA), "which is neither the first nor the second"},
	} {
		_, err := startNATSServer(config.NATS{URL: freeURL(t)}, dir, zerolog.Nop(), storeEncryption(tc.master))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	start(keys(keyB, keyA), "rotatedwordthree") // re-encrypted under B
	start(keys(keyB), "wordfour")               // A retired
	if found := inClear(); len(found) > 0 {
		t.Fatalf("clear text on disk: %v", found)
	}
	// After a failed start the marker is unchanged.
	start(keys(keyB), "wordfive")
	// Without the marker, a wrong key still fails: the server skips the
	// streams it cannot decrypt.
	if err := os.Remove(filepath.Join(dir, "nats", storeEncryptionMarker)); err != nil {
		t.Fatal(err)
	}
	_, err := startNATSServer(config.NATS{URL: freeURL(t)}, dir, zerolog.Nop(), storeEncryption(keys(keyC)))
	if err == nil || !strings.Contains(err.Error(), "opened 0 of the 1 streams") {
		t.Fatalf("wrong key without marker: %v", err)
	}
	// The failed start left the marker alone: the right key opens the store.
	start(keys(keyB), "wordfive")
}

// startTestServer starts the embedded server storing under dir/nats.
func startTestServer(t *testing.T, dir string, master *keyring.MasterKeys) *server.Server {
	t.Helper()
	s, err := startNATSServer(config.NATS{URL: freeURL(t)}, dir, zerolog.Nop(), storeEncryption(master))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freeURL returns a NATS URL on a free loopback port.
func freeURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "nats://" + ln.Addr().String()
}

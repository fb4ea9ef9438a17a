package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/keyring"
)

func TestKeysCommand(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	t.Setenv("NATS_URL", url)
	t.Setenv("RAGPIPE_ENCRYPTION_KEY_FILE", "")
	t.Setenv("RAGPIPE_LOG_LEVEL", "disabled")
	keys := func(args ...string) (code int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		code = run(append([]string{"keys"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, _ := keys("new")
	oldKey := strings.TrimSpace(out)
	if _, err := keyring.ParseMasterKeys([]byte(out)); code != 0 || err != nil {
		t.Fatalf("keys new: exit %d, %q: %v", code, out, err)
	}
	if code, _, errOut := keys("rewrap"); code != 1 || !strings.Contains(errOut, "RAGPIPE_ENCRYPTION_KEY_FILE is not set") ||
		strings.Count(errOut, "\n") != 1 {
		t.Fatalf("rewrap without key file: exit %d, %q", code, errOut)
	}
	if code, _, _ := keys("rotate"); code != 1 {
		t.Fatalf("unknown action: exit %d", code)
	}

	// Three tenants' keys under the old master key, one of them forgotten.
	old, _ := keyring.ParseMasterKeys([]byte(oldKey))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	k, err := keyring.Open(t.Context(), js, old, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, tenant := range []string{"a", "b", "c"} {
		if _, err := k.Tenant(t.Context(), tenant); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.Destroy(t.Context(), "c"); err != nil {
		t.Fatal(err)
	}

	newKey := keyring.NewMasterKey()
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"+oldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAGPIPE_ENCRYPTION_KEY_FILE", keyFile)
	fresh, _ := keyring.ParseMasterKeys([]byte(newKey))
	newID := fresh.Primary()
	code, out, errOut := keys("rewrap")
	want := "3 tenant keys: 2 re-wrapped, 0 already under master key " + newID + ", 1 forgotten\n"
	if code != 0 || out != want {
		t.Fatalf("rewrap: exit %d, %q (stderr %q), want %q", code, out, errOut, want)
	}
	// The old key may go: every live key unwraps under the new one alone.
	if err := os.WriteFile(keyFile, []byte(newKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = keys("rewrap")
	if want := "3 tenant keys: 0 re-wrapped, 2 already under master key " + newID + ", 1 forgotten\n"; code != 0 || out != want {
		t.Fatalf("second rewrap: exit %d, %q, want %q", code, out, want)
	}
}

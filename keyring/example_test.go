package keyring_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/keyring"
)

// A master key file of two keys: the first wraps new data keys, the second
// (being retired) still unwraps. Keys are known by their ids.
func ExampleParseMasterKeys() {
	file := `# ragpipe master keys, newest first
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
# retired 2026-12, remove after ragpipe keys rewrap
ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=
`
	m, err := keyring.ParseMasterKeys([]byte(file))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Primary())
	fmt.Println(m)
	// Output:
	// 630dcd2966c43366
	// master keys 630dcd2966c43366,72dbb7336c767800
}

// The ingest side seals a chunk's text with Tenant (creating the key on
// first need); the search side opens it with Lookup, which never creates.
func ExampleKeyring() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	master, err := keyring.LoadMasterKeys("/etc/ragpipe/master.key")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := keyring.Open(ctx, js, master, keyring.Config{Replicas: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer keys.Close()

	alice, err := keys.Tenant(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	stored := alice.Seal("documents", "rds/prod-orders", 0, "Nightly backups, 42 min restore.")

	key, err := keys.Lookup(ctx, "alice")
	if errors.Is(err, keyring.ErrForgotten) {
		return // forgotten: nothing of alice is readable
	}
	if err != nil {
		log.Fatal(err)
	}
	text, err := key.Open("documents", "rds/prod-orders", 0, stored)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(text)
}

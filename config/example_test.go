package config_test

import (
	"cmp"
	"fmt"

	"github.com/ragpipe/ragpipe/config"
)

func ExampleLoadFrom() {
	cfg, err := config.LoadFrom([]string{
		"QDRANT_URL=https://qdrant.example.com",
		"QDRANT_API_KEY=s3cr3t",
		// tickets is embedded by the embedder profile "bge".
		"RAGPIPE_COLLECTIONS=docs:384:cosine, tickets:1024:dot:bge",
		"RAGPIPE_EMBEDDER_BGE_KIND=tei",
		"RAGPIPE_EMBEDDER_BGE_URL=http://tei:8080",
		"RAGPIPE_EMBEDDER_BGE_MODEL=BAAI/bge-m3",
	}, "testdata-none")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Qdrant.Host, cfg.Qdrant.Port, cfg.Qdrant.TLS)
	for _, c := range cfg.Collections {
		fmt.Println(c.Name, c.Dims, c.Distance, cmp.Or(c.Embedder, "(default)"))
	}
	bge := cfg.Profiles["bge"]
	fmt.Println(bge.Kind, bge.URL, bge.Model, bge.BatchSize)
	fmt.Println(cfg.Redacted().Qdrant.APIKey)
	// Output:
	// qdrant.example.com 6334 true
	// docs 384 cosine (default)
	// tickets 1024 dot bge
	// tei http://tei:8080 BAAI/bge-m3 32
	// REDACTED
}

func ExampleLoadFrom_invalid() {
	_, err := config.LoadFrom([]string{
		"RAGPIPE_MAX_DELIVER=ten",
		"RAGPIPE_CHUNK_OVERLAP=2500",
		"NATS_URL=nats://alice:pa55@localhost:4222,localhost:4223",
	}, "testdata-none")
	fmt.Println(err)
	// Output:
	// config: RAGPIPE_MAX_DELIVER="ten": not an integer; NATS_URL entry "localhost:4223": must be a nats://, tls://, ws:// or wss:// URL with a host, such as nats://127.0.0.1:4222; RAGPIPE_CHUNK_OVERLAP=2500: must be from 0 to half of RAGPIPE_CHUNK_SIZE (1000)
}

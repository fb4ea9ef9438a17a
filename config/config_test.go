package config_test

import (
	"bytes"
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/pipeline"
)

func TestDefaults(t *testing.T) {
	got, err := config.LoadFrom(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Config{
		AppEnv: "development",
		NATS:   config.NATS{URL: "nats://127.0.0.1:4222"},
		Qdrant: config.Qdrant{
			URL: "http://localhost:6334", Host: "localhost", Port: 6334,
			Timeout: 30 * time.Second, PoolSize: 3, QueriesInFlight: 4, WriteOrdering: "medium",
		},
		Collections: []pipeline.Collection{{Name: "documents", Dims: 1024, Distance: pipeline.Cosine}},
		Embedder: config.Embedder{
			Kind: "builtin", BatchSize: 32, Concurrency: 4, Timeout: 30 * time.Second,
			MaxRetryTime: time.Minute, Truncate: true,
		},
		SubjectPrefix:     "rag",
		HNSW:              "tenant",
		Shards:            1,
		ReplicationFactor: 1,
		WriteConsistency:  1,
		Keywords:          true,
		MaxDeliver:        10,
		AutoCreate:        mustAutoCreate(t, "true"),
		MaxCollections:    100,
		ShutdownTimeout:   20 * time.Second,
		ChunkSize:         2000,
		ChunkOverlap:      200,
		MaxEventBytes:     1 << 20,
		DataDir:           "./ragpipe-data",
		LogLevel:          "info",
		HTTPAddr:          ":9090",
		Worker: config.Worker{
			BatchSize: 256, FlushInterval: 20 * time.Millisecond, Concurrency: 4,
			MaxAckPending: 256 * (4 + 1), AckWait: 30 * time.Second, StreamReplicas: 1,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %v\nwant %v", got, want)
	}
}

func TestOverrides(t *testing.T) {
	got, err := config.LoadFrom([]string{
		"RAGPIPE_HTTP_ADDR=", // set but empty disables
		"RAGPIPE_MAX_ACK_PENDING=7",
		"RAGPIPE_SUBJECT_PREFIX=acme.rag",
		"RAGPIPE_REPLICATION_FACTOR=3",
		"RAGPIPE_WRITE_CONSISTENCY=2",
		"QDRANT_TIMEOUT=", // empty means default
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got.HTTPAddr != "" || got.Worker.MaxAckPending != 7 || got.SubjectPrefix != "acme.rag" ||
		got.WriteConsistency != 2 || got.Qdrant.Timeout != 30*time.Second || got.Qdrant.Explicit {
		t.Errorf("got %v", got)
	}
}

func TestKeywords(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want bool
	}{
		{nil, true},
		{[]string{"RAGPIPE_KEYWORDS=true"}, true},
		{[]string{"RAGPIPE_KEYWORDS=false"}, false},
		{[]string{"RAGPIPE_KEYWORDS=0"}, false},
	} {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			got, err := config.LoadFrom(tt.env, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if got.Keywords != tt.want {
				t.Errorf("Keywords = %t, want %t", got.Keywords, tt.want)
			}
			if want := fmt.Sprintf(" RAGPIPE_KEYWORDS=%t ", tt.want); !strings.Contains(got.String(), want) {
				t.Errorf("String() = %q, want it to contain %q", got.String(), want)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"APP_ENV=../etc", `APP_ENV="../etc": must be`},
		{"NATS_URL=http://x:4222", `NATS_URL entry "http://x:4222": must be a nats://, tls://, ws:// or wss:// URL`},
		{"NATS_URL=nats://a:4222, ", `NATS_URL entry "": must be`},
		{"NATS_URL=nats://", `NATS_URL entry "nats://": must be`},
		{"QDRANT_URL=grpc://q:6334", `QDRANT_URL="grpc://q:6334": must be http://host[:port] or https://host[:port]`},
		{"QDRANT_TIMEOUT=0s", `QDRANT_TIMEOUT=0s: must be > 0`},
		{"QDRANT_TIMEOUT=soon", `QDRANT_TIMEOUT="soon": not a duration`},
		{"QDRANT_POOL_SIZE=0", `QDRANT_POOL_SIZE=0: must be >= 1`},
		{"QDRANT_QUERIES_IN_FLIGHT=-1", `QDRANT_QUERIES_IN_FLIGHT=-1: must be >= 0`},
		{"QDRANT_COMPRESSION=gzip", `QDRANT_COMPRESSION="gzip": not a boolean`},
		{"QDRANT_WRITE_ORDERING=eventual", `QDRANT_WRITE_ORDERING="eventual": must be weak, medium or strong`},
		{"RAGPIPE_COLLECTIONS=docs:0:cosine", `RAGPIPE_COLLECTIONS entry "docs:0:cosine": dims must be`},
		{"RAGPIPE_EMBEDDER=bert", `RAGPIPE_EMBEDDER="bert": must be builtin, hash, openai, ollama or tei`},
		{"RAGPIPE_EMBEDDER=openai", `RAGPIPE_EMBEDDER_URL="": must be an http:// or https:// URL with a host (openai needs one)`},
		{"RAGPIPE_EMBEDDER=ollama", `RAGPIPE_EMBEDDER_MODEL: required for ollama`},
		{"RAGPIPE_EMBEDDER_BATCH_SIZE=0", `RAGPIPE_EMBEDDER_BATCH_SIZE=0: must be >= 1`},
		{"RAGPIPE_EMBEDDER_CONCURRENCY=many", `RAGPIPE_EMBEDDER_CONCURRENCY="many": not an integer`},
		{"RAGPIPE_EMBEDDER_TIMEOUT=0s", `RAGPIPE_EMBEDDER_TIMEOUT=0s: must be > 0`},
		{"RAGPIPE_EMBEDDER_MAX_RETRY_TIME=0s", `RAGPIPE_EMBEDDER_MAX_RETRY_TIME=0s: must be > 0`},
		{"RAGPIPE_EMBEDDER_TRUNCATE=yes please", `RAGPIPE_EMBEDDER_TRUNCATE="yes please": not a boolean`},
		{"RAGPIPE_SUBJECT_PREFIX=rag.*", `RAGPIPE_SUBJECT_PREFIX="rag.*": must be`},
		{"RAGPIPE_SUBJECT_PREFIX=rag..x", `RAGPIPE_SUBJECT_PREFIX="rag..x": must be`},
		{"RAGPIPE_SUBJECT_PREFIX=my rag", `RAGPIPE_SUBJECT_PREFIX="my rag": must be`},
		{"RAGPIPE_HNSW=local", `RAGPIPE_HNSW="local": must be tenant or global`},
		{"RAGPIPE_SHARDS=0", `RAGPIPE_SHARDS=0: must be >= 1`},
		{"RAGPIPE_SHARDS=-1", `RAGPIPE_SHARDS="-1": not a non-negative integer`},
		{"RAGPIPE_REPLICATION_FACTOR=0", `RAGPIPE_REPLICATION_FACTOR=0: must be >= 1`},
		{"RAGPIPE_WRITE_CONSISTENCY=2", `RAGPIPE_WRITE_CONSISTENCY=2: must be >= 1 and <= RAGPIPE_REPLICATION_FACTOR (1)`},
		{"RAGPIPE_WRITE_CONSISTENCY=0", `RAGPIPE_WRITE_CONSISTENCY=0: must be >= 1`},
		{"RAGPIPE_KEYWORDS=dense", `RAGPIPE_KEYWORDS="dense": not a boolean (true or false)`},
		{"RAGPIPE_MAX_DELIVER=0", `RAGPIPE_MAX_DELIVER=0: must be >= 1`},
		{"RAGPIPE_MAX_DELIVER=ten", `RAGPIPE_MAX_DELIVER="ten": not an integer`},
		{"RAGPIPE_MAX_DELIVER=99999999999", `RAGPIPE_MAX_DELIVER="99999999999": out of range`},
		{"RAGPIPE_AUTO_CREATE=Maybe", `RAGPIPE_AUTO_CREATE "Maybe": not true, false, a collection name or a prefix* pattern`},
		{"RAGPIPE_CHUNK_SIZE=0", `RAGPIPE_CHUNK_SIZE=0: must be >= 1`},
		{"RAGPIPE_CHUNK_OVERLAP=1001", `RAGPIPE_CHUNK_OVERLAP=1001: must be from 0 to half of RAGPIPE_CHUNK_SIZE (1000)`},
		{"RAGPIPE_CHUNK_OVERLAP=-1", `RAGPIPE_CHUNK_OVERLAP=-1: must be from 0`},
		{"RAGPIPE_MAX_EVENT_BYTES=0", `RAGPIPE_MAX_EVENT_BYTES=0: must be >= 1`},
		{"RAGPIPE_LOG_LEVEL=loud", `RAGPIPE_LOG_LEVEL="loud": must be trace, debug, info`},
		{"RAGPIPE_HTTP_ADDR=9090", `RAGPIPE_HTTP_ADDR="9090": must be host:port or :port`},
		{"RAGPIPE_BATCH_SIZE=0", `RAGPIPE_BATCH_SIZE=0: must be >= 1`},
		{"RAGPIPE_FLUSH_INTERVAL=0s", `RAGPIPE_FLUSH_INTERVAL=0s: must be > 0`},
		{"RAGPIPE_CONCURRENCY=0", `RAGPIPE_CONCURRENCY=0: must be >= 1`},
		{"RAGPIPE_MAX_ACK_PENDING=-1", `RAGPIPE_MAX_ACK_PENDING=-1: must be >= 0`},
		{"RAGPIPE_ACK_WAIT=500ms", `RAGPIPE_ACK_WAIT=500ms: must be >= 1s`},
		{"RAGPIPE_STREAM_REPLICAS=6", `RAGPIPE_STREAM_REPLICAS=6: must be from 1 to 5`},
		{"RAGPIPE_STREAM_REPLICAS=0", `RAGPIPE_STREAM_REPLICAS=0: must be from 1 to 5`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, err := config.LoadFrom([]string{tt.env}, t.TempDir())
			checkErr(t, err, tt.want)
		})
	}
}

// checkErr asserts that err is a one-line "config: " error containing every
// one of want.
func checkErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "config: ") || strings.Contains(msg, "\n") {
		t.Errorf("error is not one line starting with \"config: \": %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q\ndoes not contain %q", msg, w)
		}
	}
}

func TestEncryptionKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := keyring.NewMasterKey()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.key", "# ragpipe\n"+key+"\n", 0o600)
	cfg, err := config.LoadFrom([]string{"RAGPIPE_ENCRYPTION_KEY_FILE=" + good}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MasterKeys == nil || len(cfg.MasterKeys.IDs()) != 1 || strings.Contains(cfg.String(), key) {
		t.Fatalf("MasterKeys = %v; settings %s", cfg.MasterKeys, cfg)
	}
	if cfg, err := config.LoadFrom(nil, dir); err != nil || cfg.MasterKeys != nil {
		t.Fatalf("unset: MasterKeys = %v, %v", cfg.MasterKeys, err)
	}
	bad := write("bad.key", key[:20]+"\n", 0o600)
	unreadable := write("unreadable.key", key+"\n", 0o000)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.key"), "missing.key: no such file or directory"},
		{bad, "bad.key: line 1: not a master key"},
		{dir, ": is a directory"},
		{unreadable, "unreadable.key: permission denied"},
	} {
		if tc.path == unreadable && os.Geteuid() == 0 {
			continue // root reads it all the same
		}
		_, err := config.LoadFrom([]string{"RAGPIPE_ENCRYPTION_KEY_FILE=" + tc.path}, dir)
		if err == nil || !strings.Contains(err.Error(), "RAGPIPE_ENCRYPTION_KEY_FILE="+dir) ||
			!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), key[:20]) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", tc.path, err, tc.want)
		}
	}
}

func TestAllProblemsReported(t *testing.T) {
	_, err := config.LoadFrom([]string{
		"RAGPIPE_MAX_DELIVER=ten",
		"RAGPIPE_CHUNK_OVERLAP=2500",
		"RAGPIPE_HNSW=local",
		"RAGPIPE_COLLECTIONS=Docs:1:cosine,b:1:cos",
	}, t.TempDir())
	checkErr(t, err,
		`RAGPIPE_MAX_DELIVER="ten": not an integer`,
		`RAGPIPE_CHUNK_OVERLAP=2500`,
		`RAGPIPE_HNSW="local"`,
		`RAGPIPE_COLLECTIONS entry "Docs:1:cosine": name must be`,
		`RAGPIPE_COLLECTIONS entry "b:1:cos": distance must be`,
	)
	// A value that does not parse is reported once, not again as its zero value.
	if n := strings.Count(err.Error(), "RAGPIPE_MAX_DELIVER"); n != 1 {
		t.Errorf("RAGPIPE_MAX_DELIVER reported %d times: %v", n, err)
	}
}

func TestProfile(t *testing.T) {
	dir := t.TempDir()
	profile := "# staging\nRAGPIPE_CHUNK_SIZE=500\nRAGPIPE_CHUNK_OVERLAP=50\nexport NATS_TOKEN=\"from-file\"\nAPP_ENV=other\n"
	if err := os.WriteFile(filepath.Join(dir, ".env.staging"), []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env.broken"), []byte("NATS_TOKEN=\"s3cr3t-in-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		environ []string
		check   func(*config.Config) bool
	}{
		{"profile read", []string{"APP_ENV=staging"}, func(c *config.Config) bool {
			return c.AppEnv == "staging" && c.ChunkSize == 500 && c.ChunkOverlap == 50 && c.NATS.Token == "from-file"
		}},
		{"environment wins", []string{"APP_ENV=staging", "RAGPIPE_CHUNK_SIZE=800", "NATS_TOKEN="}, func(c *config.Config) bool {
			return c.ChunkSize == 800 && c.ChunkOverlap == 50 && c.NATS.Token == ""
		}},
		{"no profile file", []string{"APP_ENV=production"}, func(c *config.Config) bool {
			return c.AppEnv == "production" && c.ChunkSize == 2000
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.LoadFrom(tt.environ, dir)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("got %v", c)
			}
		})
	}

	t.Run("bad syntax", func(t *testing.T) {
		_, err := config.LoadFrom([]string{"APP_ENV=broken"}, dir)
		checkErr(t, err, ".env.broken: invalid dotenv syntax")
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error shows the file's secret: %v", err)
		}
	})
}

func TestQdrantURL(t *testing.T) {
	tests := []struct {
		url  string
		host string
		port int
		tls  bool
		ok   bool
	}{
		{"http://localhost:6334", "localhost", 6334, false, true},
		{"http://qdrant", "qdrant", 6334, false, true},
		{"https://x.cloud.qdrant.io", "x.cloud.qdrant.io", 6334, true, true},
		{"https://x.cloud.qdrant.io:443/", "x.cloud.qdrant.io", 443, true, true},
		{"HTTP://[::1]:7000", "::1", 7000, false, true},
		{"grpc://qdrant:6334", "", 0, false, false},
		{"qdrant:6334", "", 0, false, false},
		{"http://qdrant:6334/api", "", 0, false, false},
		{"http://qdrant:6334?x=1", "", 0, false, false},
		{"http://:6334", "", 0, false, false},
		{"http://qdrant:99999", "", 0, false, false},
		{"http://user:pw@qdrant:6334", "", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := config.LoadFrom([]string{"QDRANT_URL=" + tt.url}, t.TempDir())
			if !tt.ok {
				checkErr(t, err, "QDRANT_URL=", "must be http://host[:port] or https://host[:port]")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Qdrant.Host != tt.host || c.Qdrant.Port != tt.port || c.Qdrant.TLS != tt.tls || !c.Qdrant.Explicit {
				t.Errorf("got host %q port %d tls %v explicit %v", c.Qdrant.Host, c.Qdrant.Port, c.Qdrant.TLS, c.Qdrant.Explicit)
			}
		})
	}
}

func TestCollections(t *testing.T) {
	tests := []struct {
		value string
		want  []pipeline.Collection
		err   string
	}{
		{value: "docs:384:cosine", want: []pipeline.Collection{{Name: "docs", Dims: 384, Distance: pipeline.Cosine}}},
		{value: " a:1:DOT , b_2-x:65536:Euclid,c:3:manhattan ", want: []pipeline.Collection{
			{Name: "a", Dims: 1, Distance: pipeline.Dot},
			{Name: "b_2-x", Dims: 65536, Distance: pipeline.Euclid},
			{Name: "c", Dims: 3, Distance: pipeline.Manhattan},
		}},
		{value: "docs:0:cosine", err: `entry "docs:0:cosine": dims must be an integer from 1 to 65536`},
		{value: "docs:65537:cosine", err: `dims must be`},
		{value: "docs:many:cosine", err: `dims must be`},
		{value: "docs:8:jaccard", err: `entry "docs:8:jaccard": distance must be cosine, dot, euclid or manhattan`},
		{value: "1docs:8:dot", err: `entry "1docs:8:dot": name must be 1-64 characters`},
		{value: "Docs:8:dot", err: `name must be`},
		{value: strings.Repeat("a", 65) + ":8:dot", err: `name must be`},
		{value: "docs:8", err: `entry "docs:8": must be name:dims:distance[:profile]`},
		{value: "docs:8:dot:bge:x", err: `entry "docs:8:dot:bge:x": must be name:dims:distance[:profile]`},
		{value: "docs:8:dot:1bge", err: `entry "docs:8:dot:1bge": profile must be 1-32 letters, digits or _`},
		{value: "docs:8:dot:bge-m3", err: `profile must be`},
		{value: "docs:8:dot:", err: `profile must be`},
		{value: "docs:8:dot,", err: `entry "": must be name:dims:distance`},
		{value: "docs:8:dot,docs:16:cosine", err: `entry "docs:16:cosine": collection "docs" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := config.LoadFrom([]string{"RAGPIPE_COLLECTIONS=" + tt.value}, t.TempDir())
			if tt.err != "" {
				checkErr(t, err, "RAGPIPE_COLLECTIONS entry ", tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Collections, tt.want) {
				t.Errorf("got %v, want %v", c.Collections, tt.want)
			}
		})
	}
}

func TestRedaction(t *testing.T) {
	secrets := []string{"qdrant-key", "nats-pass", "nats-tok", "embed-key", "url-pass", "url-token", "embed-url-pass"}
	c, err := config.LoadFrom([]string{
		"QDRANT_API_KEY=qdrant-key",
		"NATS_PASSWORD=nats-pass",
		"NATS_TOKEN=nats-tok",
		"RAGPIPE_EMBEDDER_API_KEY=embed-key",
		"NATS_URL=nats://alice:url-pass@n1:4222, nats://url-token@n2:4222,nats://n3:4222",
		"RAGPIPE_EMBEDDER=openai",
		"RAGPIPE_EMBEDDER_MODEL=text-embedding-3-small",
		"RAGPIPE_EMBEDDER_URL=https://bob:embed-url-pass@llm:8000/v1",
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	log := zerolog.New(&logged)
	log.Info().Object("config", c).Send()
	log.Info().Interface("config", *c).Send() // a value is marshalled the same way
	r := c.Redacted()
	outputs := map[string]string{
		"String":   c.String(),
		"fmt":      fmt.Sprintf("%v %+v %s", c, *c, c),
		"zerolog":  logged.String(),
		"Redacted": fmt.Sprintf("%+v %+v %+v", r.NATS, r.Qdrant, r.Embedder),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output shows secret %q: %s", name, s, out)
			}
		}
	}
	for _, want := range []string{"QDRANT_API_KEY=REDACTED", "nats://alice:REDACTED@n1:4222,nats://REDACTED@n2:4222,nats://n3:4222", "NATS_USER= "} {
		if !strings.Contains(c.String(), want) {
			t.Errorf("String() = %s\nwant it to contain %q", c.String(), want)
		}
	}
	if !strings.Contains(logged.String(), `"RAGPIPE_EMBEDDER_API_KEY":"REDACTED"`) {
		t.Errorf("zerolog output: %s", logged.String())
	}
	if c.NATS.Password != "nats-pass" {
		t.Error("Redacted modified the original config")
	}
	if s := (config.Config{}).Redacted(); s.NATS.Password != "" || s.Qdrant.APIKey != "" {
		t.Error("Redacted filled secrets that were not set")
	}

	// Errors about URLs do not show their credentials either.
	_, err = config.LoadFrom([]string{
		"NATS_URL=ftp://alice:url-pass@n1:4222",
		"QDRANT_URL=http://bob:url-pass@q:6334/x",
	}, t.TempDir())
	checkErr(t, err, `NATS_URL entry "ftp://alice:REDACTED@n1:4222"`, `QDRANT_URL="http://bob:REDACTED@q:6334/x"`)
	if strings.Contains(err.Error(), "url-pass") {
		t.Errorf("error shows a secret: %v", err)
	}
}

func TestSettings(t *testing.T) {
	var tagged []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if name := f.Tag.Get("env"); name != "" {
				tagged = append(tagged, name)
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[config.Config]())

	var names []string
	for _, s := range config.Settings() {
		names = append(names, s.Name)
		if s.Help == "" {
			t.Errorf("%s has no help", s.Name)
		}
	}
	if !slices.Equal(names, tagged) {
		t.Errorf("Settings() = %v\nwant every env tag: %v", names, tagged)
	}

	// The variables of CONTRACT §7 come in the contract's order.
	contract := []string{
		"APP_ENV", "NATS_URL", "NATS_CREDS", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN",
		"QDRANT_URL", "QDRANT_API_KEY", "QDRANT_TIMEOUT", "QDRANT_POOL_SIZE", "QDRANT_COMPRESSION",
		"RAGPIPE_COLLECTIONS", "RAGPIPE_EMBEDDER", "RAGPIPE_EMBEDDER_URL", "RAGPIPE_EMBEDDER_MODEL",
		"RAGPIPE_EMBEDDER_API_KEY", "RAGPIPE_SUBJECT_PREFIX", "RAGPIPE_HNSW", "RAGPIPE_SHARDS",
		"RAGPIPE_REPLICATION_FACTOR", "RAGPIPE_WRITE_CONSISTENCY", "RAGPIPE_MAX_DELIVER",
		"RAGPIPE_AUTO_CREATE", "RAGPIPE_MAX_COLLECTIONS", "RAGPIPE_SHUTDOWN_TIMEOUT", "RAGPIPE_ENCRYPTION_KEY_FILE", "RAGPIPE_CHUNK_SIZE", "RAGPIPE_CHUNK_OVERLAP", "RAGPIPE_MAX_EVENT_BYTES",
		"RAGPIPE_DATA_DIR", "RAGPIPE_LOG_LEVEL", "RAGPIPE_HTTP_ADDR",
	}
	inContract := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !slices.Contains(contract, n) })
	if !slices.Equal(inContract, contract) {
		t.Errorf("contract variables in Settings() = %v\nwant %v", inContract, contract)
	}
}

// TestDefaultsDocumented checks that the doc comment of every setting field
// ends its text with "Default: " and the field's envDefault ("none" when it
// has none), so that the comments cannot drift from what Load fills in.
func TestDefaultsDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		st, ok := node.(*ast.StructType)
		if !ok {
			return true
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag := reflect.StructTag(strings.Trim(field.Tag.Value, "`"))
			name := tag.Get("env")
			if name == "" {
				continue
			}
			n++
			want := "Default: " + cmp.Or(tag.Get("envDefault"), "none") + "."
			if doc := strings.Join(strings.Fields(field.Doc.Text()), " "); !strings.HasSuffix(doc, want) {
				t.Errorf("%s: doc comment %q does not end with %q", name, doc, want)
			}
		}
		return true
	})
	if n != len(config.Settings()) {
		t.Errorf("checked %d fields, want the %d settings", n, len(config.Settings()))
	}
}

func TestEmbedderProfiles(t *testing.T) {
	c, err := config.LoadFrom([]string{
		"RAGPIPE_COLLECTIONS=docs:1024:cosine:BGE_m3,notes:768:cosine:small,tickets:1024:dot:bge_m3,misc:1024:cosine",
		"RAGPIPE_EMBEDDER_BGE_M3_KIND=tei",
		"RAGPIPE_EMBEDDER_BGE_M3_URL=http://tei:8080",
		"RAGPIPE_EMBEDDER_BGE_M3_BATCH_SIZE=16",
		"RAGPIPE_EMBEDDER_BGE_M3_TRUNCATE=false",
		"RAGPIPE_EMBEDDER_SMALL_KIND=openai",
		"RAGPIPE_EMBEDDER_SMALL_URL=https://api.openai.com/v1",
		"RAGPIPE_EMBEDDER_SMALL_MODEL=text-embedding-3-small",
		"RAGPIPE_EMBEDDER_SMALL_API_KEY=sk-profile-secret",
		"RAGPIPE_EMBEDDER_SMALL_SEND_DIMENSIONS=true",
		"RAGPIPE_EMBEDDER_BATCH_SIZE=64", // the default embedder's: profiles do not inherit it
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var profiles []string
	for _, col := range c.Collections {
		profiles = append(profiles, col.Embedder)
	}
	if want := []string{"bge_m3", "small", "bge_m3", ""}; !slices.Equal(profiles, want) {
		t.Errorf("collection profiles %q, want %q", profiles, want)
	}
	want := map[string]config.Embedder{
		"bge_m3": {Kind: "tei", URL: "http://tei:8080", BatchSize: 16, Concurrency: 4,
			Timeout: 30 * time.Second, MaxRetryTime: time.Minute},
		"small": {Kind: "openai", URL: "https://api.openai.com/v1", Model: "text-embedding-3-small",
			APIKey: "sk-profile-secret", BatchSize: 32, Concurrency: 4, Timeout: 30 * time.Second,
			MaxRetryTime: time.Minute, Truncate: true, SendDimensions: true},
	}
	if !reflect.DeepEqual(c.Profiles, want) {
		t.Errorf("profiles\n got %+v\nwant %+v", c.Profiles, want)
	}
	if c.Embedder.BatchSize != 64 {
		t.Errorf("default embedder batch size %d, want 64", c.Embedder.BatchSize)
	}

	// Profiles are printed and logged with their variables, secrets hidden.
	var logged bytes.Buffer
	log := zerolog.New(&logged)
	log.Info().Object("config", c).Send()
	for name, out := range map[string]string{"String": c.String(), "zerolog": logged.String()} {
		if strings.Contains(out, "sk-profile-secret") {
			t.Errorf("%s shows the profile's API key: %s", name, out)
		}
		for _, want := range []string{"RAGPIPE_EMBEDDER_SMALL_KIND", "RAGPIPE_EMBEDDER_BGE_M3_BATCH_SIZE", "RAGPIPE_EMBEDDER_SMALL_API_KEY", "docs:1024:cosine:bge_m3"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %s: %s", name, want, out)
			}
		}
	}
	if c.Redacted().Profiles["small"].APIKey != "REDACTED" || c.Profiles["small"].APIKey != "sk-profile-secret" {
		t.Error("Redacted does not hide the profile's key, or changed the original")
	}
}

func TestEmbedderProfileErrors(t *testing.T) {
	_, err := config.LoadFrom([]string{
		"RAGPIPE_COLLECTIONS=a:8:cosine:nokind,b:8:cosine:bad,c:8:cosine:nourl",
		"RAGPIPE_EMBEDDER_BAD_KIND=openai",
		"RAGPIPE_EMBEDDER_BAD_URL=ftp://x:url-secret@llm",
		"RAGPIPE_EMBEDDER_BAD_MODEL=m",
		"RAGPIPE_EMBEDDER_BAD_BATCH_SIZE=lots",
		"RAGPIPE_EMBEDDER_BAD_TIMEOUT=0s",
		"RAGPIPE_EMBEDDER_NOURL_KIND=ollama",
	}, t.TempDir())
	checkErr(t, err,
		`RAGPIPE_EMBEDDER_NOKIND_KIND: not set, but RAGPIPE_COLLECTIONS entry "a" names embedder profile "nokind"`,
		`RAGPIPE_EMBEDDER_BAD_BATCH_SIZE="lots": not an integer`,
		`RAGPIPE_EMBEDDER_BAD_URL="ftp://x:REDACTED@llm": must be an http:// or https:// URL`,
		`RAGPIPE_EMBEDDER_BAD_TIMEOUT=0s: must be > 0`,
		`RAGPIPE_EMBEDDER_NOURL_URL="": must be`,
		`RAGPIPE_EMBEDDER_NOURL_MODEL: required for ollama`,
	)
	if strings.Contains(err.Error(), "url-secret") {
		t.Errorf("error shows a secret: %v", err)
	}
	// A value that does not parse is reported once, not again as its zero value.
	if n := strings.Count(err.Error(), "RAGPIPE_EMBEDDER_BAD_BATCH_SIZE"); n != 1 {
		t.Errorf("RAGPIPE_EMBEDDER_BAD_BATCH_SIZE reported %d times: %v", n, err)
	}
}

// TestProfilesDefinedInEnvironment: a profile whose kind the environment
// sets is read and checked even when no collection names it, so that a
// generation may use it.
func TestProfilesDefinedInEnvironment(t *testing.T) {
	c, err := config.LoadFrom([]string{
		"RAGPIPE_COLLECTIONS=docs:1024:cosine",
		"RAGPIPE_EMBEDDER_SMALL_KIND=openai",
		"RAGPIPE_EMBEDDER_SMALL_URL=http://llm:8080",
		"RAGPIPE_EMBEDDER_SMALL_MODEL=m",
		"RAGPIPE_EMBEDDER_SMALL_CONCURRENCY=2",
		"RAGPIPE_EMBEDDER_BGE_M3_KIND=hash",
		"RAGPIPE_EMBEDDER_UNUSED_KIND=", // set but empty: no profile
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]config.Embedder{
		"small": {Kind: "openai", URL: "http://llm:8080", Model: "m", BatchSize: 32, Concurrency: 2,
			Timeout: 30 * time.Second, MaxRetryTime: time.Minute, Truncate: true},
		"bge_m3": {Kind: "hash", BatchSize: 32, Concurrency: 4, Timeout: 30 * time.Second,
			MaxRetryTime: time.Minute, Truncate: true},
	}
	if !reflect.DeepEqual(c.Profiles, want) {
		t.Errorf("profiles\n got %+v\nwant %+v", c.Profiles, want)
	}
	if !strings.Contains(c.String(), "RAGPIPE_EMBEDDER_SMALL_MODEL") {
		t.Errorf("String lacks the profile: %s", c)
	}

	// A profile no collection names is checked as one that a collection names.
	_, err = config.LoadFrom([]string{
		"RAGPIPE_COLLECTIONS=docs:8:cosine",
		"RAGPIPE_EMBEDDER_BAD_KIND=openai",
		"RAGPIPE_EMBEDDER_BAD_URL=ftp://x:url-secret@llm",
		"RAGPIPE_EMBEDDER_BAD_BATCH_SIZE=lots",
		"RAGPIPE_EMBEDDER_ODD_KIND=word2vec",
		"RAGPIPE_EMBEDDER_Mixed_KIND=hash",
		"RAGPIPE_EMBEDDER_9X_KIND=hash",
	}, t.TempDir())
	checkErr(t, err,
		`RAGPIPE_EMBEDDER_BAD_BATCH_SIZE="lots": not an integer`,
		`RAGPIPE_EMBEDDER_BAD_URL="ftp://x:REDACTED@llm": must be an http:// or https:// URL`,
		`RAGPIPE_EMBEDDER_BAD_MODEL: required for openai`,
		`RAGPIPE_EMBEDDER_ODD_KIND="word2vec": must be builtin, hash, openai, ollama or tei`,
		`RAGPIPE_EMBEDDER_Mixed_KIND: sets no embedder profile`,
		`RAGPIPE_EMBEDDER_9X_KIND: sets no embedder profile`,
	)
	if strings.Contains(err.Error(), "url-secret") {
		t.Errorf("error shows a secret: %v", err)
	}
	if n := strings.Count(err.Error(), "RAGPIPE_EMBEDDER_BAD_BATCH_SIZE"); n != 1 {
		t.Errorf("RAGPIPE_EMBEDDER_BAD_BATCH_SIZE reported %d times: %v", n, err)
	}
}

func TestProfileVar(t *testing.T) {
	for name, want := range map[string]string{
		"RAGPIPE_EMBEDDER":         "RAGPIPE_EMBEDDER_BGE_KIND",
		"RAGPIPE_EMBEDDER_URL":     "RAGPIPE_EMBEDDER_BGE_URL",
		"RAGPIPE_EMBEDDER_API_KEY": "RAGPIPE_EMBEDDER_BGE_API_KEY",
	} {
		if got := config.ProfileVar(name, "bge"); got != want {
			t.Errorf("ProfileVar(%s, bge) = %s, want %s", name, got, want)
		}
	}
	// No profile's variable is one of the default embedder's.
	var defaults []string
	for _, s := range config.Settings() {
		if strings.HasPrefix(s.Name, "RAGPIPE_EMBEDDER") {
			defaults = append(defaults, s.Name)
		}
	}
	for _, name := range defaults {
		for _, other := range defaults {
			suffix := strings.TrimPrefix(other, "RAGPIPE_EMBEDDER_")
			for i := range len(suffix) {
				if suffix[i] != '_' {
					continue
				}
				if profile := strings.ToLower(suffix[:i]); config.ProfileVar(name, profile) == other {
					t.Errorf("profile %q's %s is the default embedder's %s", profile, name, other)
				}
			}
		}
	}
}

func TestCollectionLayout(t *testing.T) {
	c, err := config.LoadFrom([]string{
		"RAGPIPE_COLLECTIONS=docs:8:cosine,chat-log:8:dot",
		"RAGPIPE_SHARDS=2", "RAGPIPE_REPLICATION_FACTOR=2",
		"RAGPIPE_COLLECTION_CHAT_LOG_SHARDS=6", "RAGPIPE_COLLECTION_CHAT_LOG_REPLICATION_FACTOR=3",
		"RAGPIPE_COLLECTION_CHAT_LOG_WRITE_CONSISTENCY=2", "QDRANT_READ_CONSISTENCY=majority",
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	docs, chat := c.Collections[0], c.Collections[1]
	if docs.Shards != 0 || docs.ReplicationFactor != 0 || docs.WriteConsistency != 0 {
		t.Errorf("docs takes the global layout, got %+v", docs)
	}
	if chat.Shards != 6 || chat.ReplicationFactor != 3 || chat.WriteConsistency != 2 {
		t.Errorf("chat-log layout %+v, want 6 shards, replication 3, write consistency 2", chat)
	}
	if c.Qdrant.ReadConsistency != "majority" {
		t.Errorf("read consistency %q", c.Qdrant.ReadConsistency)
	}
	if got := config.CollectionVar("RAGPIPE_SHARDS", "chat-log"); got != "RAGPIPE_COLLECTION_CHAT_LOG_SHARDS" {
		t.Errorf("CollectionVar = %s", got)
	}
	for _, tt := range []struct{ env, want string }{
		{"RAGPIPE_COLLECTION_DOCS_SHARDS=0", `RAGPIPE_COLLECTION_DOCS_SHARDS="0": must be an integer >= 1`},
		{"RAGPIPE_COLLECTION_DOSC_SHARDS=3", "RAGPIPE_COLLECTION_DOSC_SHARDS: names no collection"},
		{"RAGPIPE_COLLECTION_DOCS_WRITE_CONSISTENCY=3", `collection "docs": write consistency 3 exceeds its replication factor 1`},
		{"QDRANT_READ_CONSISTENCY=most", `QDRANT_READ_CONSISTENCY="most": must be all, majority, quorum or a number >= 1`},
	} {
		_, err := config.LoadFrom([]string{"RAGPIPE_COLLECTIONS=docs:8:cosine", tt.env}, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.env, err, tt.want)
		}
	}
}

// mustAutoCreate parses a RAGPIPE_AUTO_CREATE value.
func mustAutoCreate(t *testing.T, s string) config.AutoCreate {
	t.Helper()
	var a config.AutoCreate
	if err := a.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAutoCreate(t *testing.T) {
	for _, tc := range []struct {
		setting string
		allowed []string
		refused []string
	}{
		{"true", []string{"documents", "x"}, nil},
		{"false", nil, []string{"documents", "x"}},
		{"documents, tmp-*", []string{"documents", "tmp-a", "tmp-"}, []string{"documents2", "tmp", "other"}},
		{"a*", []string{"a", "abc"}, []string{"b"}},
		{"*", []string{"a", "documents"}, nil},
	} {
		a := mustAutoCreate(t, tc.setting)
		for _, name := range tc.allowed {
			if !a.Allows(name) {
				t.Errorf("%q refuses %q", tc.setting, name)
			}
		}
		for _, name := range tc.refused {
			if a.Allows(name) {
				t.Errorf("%q allows %q", tc.setting, name)
			}
		}
	}
	for _, bad := range []string{"Maybe", "docs,,b", "9*", "a b"} {
		if _, err := config.LoadFrom([]string{"RAGPIPE_AUTO_CREATE=" + bad}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "RAGPIPE_AUTO_CREATE") {
			t.Errorf("RAGPIPE_AUTO_CREATE=%s: err %v, want one naming the setting", bad, err)
		}
	}
}

// Package config reads ragpipe's settings (CONTRACT §7) from environment
// variables and an optional .env.<APP_ENV> profile, fills defaults and
// validates them.
//
// Every setting is a struct field whose tags give its variable (env), its
// default (envDefault) and its --help text (help); Settings lists them from
// those tags, so the help output cannot drift from what Load reads.
//
// The files follow Load's steps: parse.go reads the environment and the
// profile file into the structs, collections.go reads RAGPIPE_COLLECTIONS,
// the embedder profiles and the per-collection layouts, validate.go checks
// the values, and redact.go prints them with their secrets hidden.
package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Config holds every ragpipe setting. Load returns it complete and valid;
// it is not modified afterwards, so it is safe to share between goroutines.
// Print or log it only through String, Redacted or MarshalZerologObject,
// which hide secrets. Each field's comment gives its default, which its
// envDefault tag holds.
type Config struct {
	// AppEnv names the profile file .env.<AppEnv> read from the working
	// directory. Default: development.
	AppEnv string `env:"APP_ENV" envDefault:"development" help:"profile name; .env.<APP_ENV> in the working directory is read if present, real environment variables win"`
	// NATS is the NATS connection.
	NATS NATS
	// Qdrant is the Qdrant connection and its write options.
	Qdrant Qdrant
	// Collections are created at start, each with its embedder profile ("" for
	// the default embedder). Default: documents:1024:cosine.
	Collections []pipeline.Collection `env:"RAGPIPE_COLLECTIONS" envDefault:"documents:1024:cosine" help:"collections created at start: name:dims:distance[:profile], comma-separated; distance is cosine, dot, euclid or manhattan; profile names the collection's embedder profile (letters, digits, _), set by RAGPIPE_EMBEDDER_<PROFILE>_KIND (required), _URL, _MODEL, _API_KEY and the other RAGPIPE_EMBEDDER_* settings with _<PROFILE> inserted (unset ones take their defaults); without a profile a collection uses RAGPIPE_EMBEDDER; a profile no collection names is read as well, for ragpipe reindex"`
	// Embedder is the default embedding service.
	Embedder Embedder
	// Profiles are the embedder profiles RAGPIPE_COLLECTIONS names and
	// those the environment defines (RAGPIPE_EMBEDDER_<PROFILE>_KIND set),
	// by lowercase name; nil when there is none. Derived by Load.
	Profiles map[string]Embedder
	// SubjectPrefix is the first token(s) of every subject. Default: rag.
	SubjectPrefix string `env:"RAGPIPE_SUBJECT_PREFIX" envDefault:"rag" help:"first token(s) of every subject; NATS subject tokens separated by dots, no wildcards or spaces"`
	// HNSW is the HNSW index of created collections: tenant or global.
	// Default: tenant.
	HNSW string `env:"RAGPIPE_HNSW" envDefault:"tenant" help:"HNSW index of created collections: tenant (per-tenant graphs) or global"`
	// Shards of created collections. Default: 1.
	Shards uint32 `env:"RAGPIPE_SHARDS" envDefault:"1" help:"shards of created collections (>= 1); RAGPIPE_COLLECTION_<NAME>_SHARDS sets one collection's"`
	// ReplicationFactor of created collections. Default: 1.
	ReplicationFactor uint32 `env:"RAGPIPE_REPLICATION_FACTOR" envDefault:"1" help:"replication factor of created collections (>= 1); RAGPIPE_COLLECTION_<NAME>_REPLICATION_FACTOR sets one collection's"`
	// WriteConsistency is the write consistency factor of created
	// collections. Default: 1.
	WriteConsistency uint32 `env:"RAGPIPE_WRITE_CONSISTENCY" envDefault:"1" help:"write consistency factor of created collections (1 to the replication factor); RAGPIPE_COLLECTION_<NAME>_WRITE_CONSISTENCY sets one collection's"`
	// Keywords gives the collections ragpipe creates from now on (at start,
	// on first event, the generations a reindex builds) the keyword sparse
	// vector that keyword and hybrid search need; an existing collection
	// keeps what it has until a reindex rebuilds it. Default: true.
	Keywords bool `env:"RAGPIPE_KEYWORDS" envDefault:"true" help:"keyword vectors in the collections ragpipe creates from now on (at start, on first event, the new generations of ragpipe reindex), for keyword and hybrid search (true or false); false spares Qdrant the keyword index's CPU on every write, for deployments that search with mode dense only; an existing collection keeps what it has: run ragpipe reindex with the workers set accordingly to change it"`
	// MaxDeliver is the attempts before an event is dead-lettered. Default: 10.
	MaxDeliver int `env:"RAGPIPE_MAX_DELIVER" envDefault:"10" help:"attempts before an event is dead-lettered (>= 1)"`
	// AutoCreate says which unknown collections an event may create on first
	// need: all (true), none (false), or those a list of names and prefix*
	// patterns allows. Default: true.
	AutoCreate AutoCreate `env:"RAGPIPE_AUTO_CREATE" envDefault:"true" help:"create unknown collections on first event: true, false, or a comma-separated list of names and prefix* patterns allowed"`
	// MaxCollections bounds the collections ragpipe creates on its own; an
	// event that would create one more is dead-lettered. Default: 100.
	MaxCollections int `env:"RAGPIPE_MAX_COLLECTIONS" envDefault:"100" help:"most collections ragpipe creates on its own (>= 1); an event that would create one more is dead-lettered with the reason"`
	// ShutdownTimeout bounds the work in flight after SIGINT or SIGTERM;
	// what is not finished by then is left for redelivery. Default: 20s.
	ShutdownTimeout time.Duration `env:"RAGPIPE_SHUTDOWN_TIMEOUT" envDefault:"20s" help:"on SIGINT/SIGTERM, how long in-flight work may take before it is left for redelivery and the process exits 0 (> 0)"`
	// EncryptionKeyFile names the master key file of encryption at rest
	// (format in package keyring); set, chunk texts are stored encrypted
	// under per-tenant keys it wraps; unset, they are stored clear.
	// Default: none.
	EncryptionKeyFile string `env:"RAGPIPE_ENCRYPTION_KEY_FILE" help:"master key file: lines of standard base64 of 32 random bytes (ragpipe keys new), the first wraps new tenant keys, the others only unwrap; set: chunk texts are stored encrypted under per-tenant keys"`
	// MasterKeys are the keys of EncryptionKeyFile, read once by Load; nil
	// when it is unset. They print as their ids only.
	MasterKeys *keyring.MasterKeys
	// ChunkSize is the largest chunk, in characters. Default: 2000.
	ChunkSize int `env:"RAGPIPE_CHUNK_SIZE" envDefault:"2000" help:"largest chunk, in characters (>= 1)"`
	// ChunkOverlap is the overlap of consecutive chunks, in characters.
	// Default: 200.
	ChunkOverlap int `env:"RAGPIPE_CHUNK_OVERLAP" envDefault:"200" help:"overlap of consecutive chunks, in characters (0 to half of RAGPIPE_CHUNK_SIZE)"`
	// MaxEventBytes is the largest accepted event. Default: 1048576.
	MaxEventBytes int `env:"RAGPIPE_MAX_EVENT_BYTES" envDefault:"1048576" help:"largest accepted event, in bytes (>= 1)"`
	// DataDir holds the data of `ragpipe dev`. Default: ./ragpipe-data.
	DataDir string `env:"RAGPIPE_DATA_DIR" envDefault:"./ragpipe-data" help:"data of the embedded NATS server and embedded store (dev)"`
	// LogLevel is a zerolog level. Default: info.
	LogLevel string `env:"RAGPIPE_LOG_LEVEL" envDefault:"info" help:"log level: trace, debug, info, warn, error, fatal, panic or disabled"`
	// HTTPAddr serves /healthz, /readyz and /metrics; "" (set but empty)
	// serves nothing. Default: :9090.
	HTTPAddr string `env:"RAGPIPE_HTTP_ADDR" envDefault:":9090" help:"address of /healthz, /readyz and /metrics (host:port); set but empty disables"`
	// Worker tunes the ingestion worker.
	Worker Worker
}

// NATS holds the NATS connection settings. With none of Creds, Token and
// User, the connection is unauthenticated.
type NATS struct {
	// URL lists the servers, comma-separated. Default: nats://127.0.0.1:4222.
	URL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222" help:"NATS servers, comma-separated nats://, tls://, ws:// or wss:// URLs"`
	// Creds is the path of a credentials file. Default: none.
	Creds string `env:"NATS_CREDS" help:"path of a NATS credentials file"`
	// User authenticates with Password. Default: none.
	User string `env:"NATS_USER" help:"NATS user"`
	// Password is User's password (secret). Default: none.
	Password string `env:"NATS_PASSWORD" help:"NATS password (secret)"`
	// Token authenticates with a token (secret). Default: none.
	Token string `env:"NATS_TOKEN" help:"NATS token (secret)"`
}

// Qdrant holds the Qdrant connection and write settings.
type Qdrant struct {
	// URL is the gRPC endpoint, http(s)://host[:port]. Default: http://localhost:6334.
	URL string `env:"QDRANT_URL" envDefault:"http://localhost:6334" help:"Qdrant gRPC endpoint: http://host[:port] or https://host[:port] (TLS); port defaults to 6334"`
	// Host, Port and TLS are derived from URL by Load.
	Host string
	Port int
	TLS  bool
	// Explicit reports that QDRANT_URL was given (environment or profile)
	// rather than defaulted; ragpipe dev then uses Qdrant instead of its
	// embedded store. Derived by Load.
	Explicit bool
	// APIKey is sent to Qdrant (secret). Default: none.
	APIKey string `env:"QDRANT_API_KEY" help:"Qdrant API key (secret)"`
	// Timeout bounds one request. Default: 30s.
	Timeout time.Duration `env:"QDRANT_TIMEOUT" envDefault:"30s" help:"per-request timeout (> 0)"`
	// PoolSize is the number of gRPC connections. Default: 3.
	PoolSize int `env:"QDRANT_POOL_SIZE" envDefault:"3" help:"gRPC connections to Qdrant (>= 1)"`
	// Compression gzips the gRPC connection. Default: false.
	Compression bool `env:"QDRANT_COMPRESSION" envDefault:"false" help:"gzip on the gRPC connection (true or false)"`
	// WriteOrdering is weak, medium or strong. Default: medium.
	WriteOrdering string `env:"QDRANT_WRITE_ORDERING" envDefault:"medium" help:"write ordering: weak, medium or strong"`
	// QueriesInFlight is how many requests of one collection's searches a
	// process has in flight to Qdrant before further searches wait and go
	// together, as one batch, when one returns. 0 sends each search alone,
	// at once. Default: 4.
	QueriesInFlight int `env:"QDRANT_QUERIES_IN_FLIGHT" envDefault:"4" help:"requests of one collection's searches in flight to Qdrant before further searches wait and go together as one batch when one returns, which costs Qdrant less per search under load (>= 0; 0 sends each search alone, at once)"`
	// ReadConsistency is how many replicas of a shard answer a search; ""
	// leaves Qdrant's default (one). Default: none.
	ReadConsistency string `env:"QDRANT_READ_CONSISTENCY" help:"replicas of a shard that must answer a search or list in a cluster: all, majority, quorum or a number; empty for Qdrant's default (one)"`
}

// Embedder selects and configures an embedding service: the default one, or
// an embedder profile, whose variables have the profile's name inserted (see
// ProfileVar). A profile's unset variables take the defaults below, not the
// default embedder's values.
type Embedder struct {
	// Kind is builtin, hash, openai, ollama or tei. Default: builtin.
	Kind string `env:"RAGPIPE_EMBEDDER" envDefault:"builtin" help:"builtin (semantic model inside the binary, offline, 512 dimensions zero-padded to the collection's, which needs >= 512), hash (lexical, offline, fastest), openai (any OpenAI-compatible /v1/embeddings), ollama or tei"`
	// URL is the service's base URL, required unless Kind is builtin or
	// hash. Default: none.
	URL string `env:"RAGPIPE_EMBEDDER_URL" help:"embedding service base URL, required unless builtin or hash (openai: with or without /v1; ollama, tei: the server root)"`
	// Model is the model, required for openai and ollama. Default: none.
	Model string `env:"RAGPIPE_EMBEDDER_MODEL" help:"embedding model, required for openai and ollama; for tei it names the served model so that changing it re-embeds"`
	// APIKey is sent as a bearer token (secret). Default: none.
	APIKey string `env:"RAGPIPE_EMBEDDER_API_KEY" help:"embedding service API key, sent as a bearer token (secret)"`
	// BatchSize is the texts per request. Default: 32.
	BatchSize int `env:"RAGPIPE_EMBEDDER_BATCH_SIZE" envDefault:"32" help:"texts per request to the embedding service (>= 1; tei refuses more than its --max-client-batch-size, which is 32 unless set: a refused larger batch is split, and a warning logged once)"`
	// Concurrency is the requests in flight, per collection dimension.
	// Default: 4.
	Concurrency int `env:"RAGPIPE_EMBEDDER_CONCURRENCY" envDefault:"4" help:"requests in flight to the embedding service, per collection dimension (>= 1)"`
	// Timeout bounds one request. Default: 30s.
	Timeout time.Duration `env:"RAGPIPE_EMBEDDER_TIMEOUT" envDefault:"30s" help:"per-request timeout of the embedding service (> 0)"`
	// MaxRetryTime bounds the retries of one request. Default: 60s.
	MaxRetryTime time.Duration `env:"RAGPIPE_EMBEDDER_MAX_RETRY_TIME" envDefault:"60s" help:"how long a request is retried after 429, 5xx, timeouts and network errors, Retry-After honoured, before its events are redelivered later (> 0)"`
	// Truncate has ollama and tei cut texts longer than the model's context.
	// Default: true.
	Truncate bool `env:"RAGPIPE_EMBEDDER_TRUNCATE" envDefault:"true" help:"ollama, tei: truncate texts longer than the model's context instead of failing (true or false)"`
	// SendDimensions has openai requests ask for the collection's dimensions.
	// Default: false.
	SendDimensions bool `env:"RAGPIPE_EMBEDDER_SEND_DIMENSIONS" envDefault:"false" help:"openai: send the collection's dimensions as the request's dimensions, for models that shorten their vectors such as text-embedding-3 (true or false)"`
}

// ProfileVar returns the variable that sets, for embedder profile, the
// setting whose default-embedder variable is name: RAGPIPE_EMBEDDER becomes
// RAGPIPE_EMBEDDER_<PROFILE>_KIND and RAGPIPE_EMBEDDER_<SETTING> becomes
// RAGPIPE_EMBEDDER_<PROFILE>_<SETTING>.
func ProfileVar(name, profile string) string {
	prefix := "RAGPIPE_EMBEDDER_" + strings.ToUpper(profile)
	if name == "RAGPIPE_EMBEDDER" {
		return prefix + "_KIND"
	}
	return prefix + strings.TrimPrefix(name, "RAGPIPE_EMBEDDER")
}

// Worker tunes the ingestion worker.
type Worker struct {
	// BatchSize is the messages per processing batch. Default: 256.
	BatchSize int `env:"RAGPIPE_BATCH_SIZE" envDefault:"256" help:"messages per processing batch (>= 1)"`
	// FlushInterval is the longest a partial batch waits. Default: 20ms.
	FlushInterval time.Duration `env:"RAGPIPE_FLUSH_INTERVAL" envDefault:"20ms" help:"longest a partial batch waits (> 0)"`
	// Concurrency is the batches processed in parallel. Default: 4.
	Concurrency int `env:"RAGPIPE_CONCURRENCY" envDefault:"4" help:"batches processed in parallel (>= 1)"`
	// MaxAckPending is the unacknowledged messages the consumer hands out;
	// Load turns 0 into BatchSize*(Concurrency+1). Default: 0.
	MaxAckPending int `env:"RAGPIPE_MAX_ACK_PENDING" envDefault:"0" help:"unacknowledged messages the consumer hands out; 0 means RAGPIPE_BATCH_SIZE*(RAGPIPE_CONCURRENCY+1)"`
	// AckWait is how long the server waits for an acknowledgement before
	// redelivering. Default: 30s.
	AckWait time.Duration `env:"RAGPIPE_ACK_WAIT" envDefault:"30s" help:"time the server waits for an acknowledgement before redelivering (>= 1s)"`
	// StreamReplicas is the replicas of the streams ragpipe creates. Default: 1.
	StreamReplicas int `env:"RAGPIPE_STREAM_REPLICAS" envDefault:"1" help:"replicas of the streams ragpipe creates (1 to 5)"`
	// DeferIndexing is the backlog above which Qdrant collections being
	// written build no index; 0 never defers. Default: 0.
	DeferIndexing int `env:"RAGPIPE_DEFER_INDEXING" envDefault:"0" help:"while more than this many events wait, Qdrant collections being written build no HNSW index (indexing_threshold 0) until the backlog falls to a tenth of it, then get Qdrant's default back (10000 KB); 0 never defers"`
}

// Setting describes one environment variable, for --help.
type Setting struct {
	Name    string // the variable, e.g. RAGPIPE_CHUNK_SIZE
	Default string // its default, empty if none
	Help    string // what it sets and the accepted values
}

// Settings lists every variable Load reads, in the order of CONTRACT §7;
// settings the contract does not list follow their group.
func Settings() []Setting {
	var s []Setting
	eachSetting(reflect.ValueOf(Config{}), func(f reflect.StructField, _ reflect.Value) {
		s = append(s, Setting{Name: f.Tag.Get("env"), Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	})
	return s
}

// Load reads settings from the environment (and the .env.<APP_ENV> profile),
// fills defaults and validates them. The error, if any, is one line starting with "config: " that names every
// invalid variable and never shows a secret.
func Load() (*Config, error) {
	return LoadFrom(os.Environ(), ".")
}

// LoadFrom is Load with an explicit environment and working directory (for
// tests and tools). environ holds "KEY=value" entries, as os.Environ returns them.
func LoadFrom(environ []string, dir string) (*Config, error) {
	vars, err := environment(environ, dir)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, errs := parse[Config](vars, func(key string) string { return key })
	if cfg == nil {
		return nil, problems(errs)
	}
	cfg.Profiles, errs = parseProfiles(vars, cfg.Collections, errs)
	errs = parseLayouts(vars, cfg, errs)
	if v, ok := vars["RAGPIPE_HTTP_ADDR"]; ok && v == "" {
		cfg.HTTPAddr = "" // set but empty disables; env would fill the default
	}
	cfg.Qdrant.Explicit = vars["QDRANT_URL"] != ""
	if errs = append(errs, cfg.validate()...); len(errs) > 0 {
		return nil, problems(errs)
	}
	if cfg.Worker.MaxAckPending == 0 {
		cfg.Worker.MaxAckPending = cfg.Worker.BatchSize * (cfg.Worker.Concurrency + 1)
	}
	return cfg, nil
}

// problems is the error LoadFrom returns: every problem found, on one line.
type problems []error

func (p problems) Error() string {
	msgs := make([]string, len(p))
	for i, err := range p {
		msgs[i] = err.Error()
	}
	return "config: " + strings.Join(msgs, "; ")
}

func (p problems) Unwrap() []error { return p }

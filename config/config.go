// Package config reads ragpipe's settings (CONTRACT §7) from environment
// variables and an optional .env.<APP_ENV> profile, fills defaults and
// validates them.
//
// Every setting is a struct field whose tags give its variable (env), its
// default (envDefault) and its --help text (help); Settings lists them from
// those tags, so the help output cannot drift from what Load reads.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/caarlos0/env/v10"
	"github.com/joho/godotenv"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Config holds every ragpipe setting. Load returns it complete and valid;
// it is not modified afterwards, so it is safe to share between goroutines.
// Print or log it only through String, Redacted or MarshalZerologObject,
// which hide secrets.
type Config struct {
	AppEnv      string                `env:"APP_ENV" envDefault:"development" help:"profile name; .env.<APP_ENV> in the working directory is read if present, real environment variables win"`
	NATS        NATS                  // NATS connection
	Qdrant      Qdrant                // Qdrant connection and write options
	Collections []pipeline.Collection `env:"RAGPIPE_COLLECTIONS" envDefault:"documents:1024:cosine" help:"collections created at start: name:dims:distance[:profile], comma-separated; distance is cosine, dot, euclid or manhattan; profile names the collection's embedder profile (letters, digits, _), set by RAGPIPE_EMBEDDER_<PROFILE>_KIND (required), _URL, _MODEL, _API_KEY and the other RAGPIPE_EMBEDDER_* settings with _<PROFILE> inserted (unset ones take their defaults); without a profile a collection uses RAGPIPE_EMBEDDER"`
	Embedder    Embedder              // the default embedding service
	// Profiles are the embedder profiles RAGPIPE_COLLECTIONS names, by
	// lowercase name. Derived by Load.
	Profiles          map[string]Embedder
	SubjectPrefix     string `env:"RAGPIPE_SUBJECT_PREFIX" envDefault:"rag" help:"first token(s) of every subject; NATS subject tokens separated by dots, no wildcards or spaces"`
	HNSW              string `env:"RAGPIPE_HNSW" envDefault:"tenant" help:"HNSW index of created collections: tenant (per-tenant graphs) or global"`
	Shards            uint32 `env:"RAGPIPE_SHARDS" envDefault:"1" help:"shards of created collections (>= 1); RAGPIPE_COLLECTION_<NAME>_SHARDS sets one collection's"`
	ReplicationFactor uint32 `env:"RAGPIPE_REPLICATION_FACTOR" envDefault:"1" help:"replication factor of created collections (>= 1); RAGPIPE_COLLECTION_<NAME>_REPLICATION_FACTOR sets one collection's"`
	WriteConsistency  uint32 `env:"RAGPIPE_WRITE_CONSISTENCY" envDefault:"1" help:"write consistency factor of created collections (1 to the replication factor); RAGPIPE_COLLECTION_<NAME>_WRITE_CONSISTENCY sets one collection's"`
	MaxDeliver        int    `env:"RAGPIPE_MAX_DELIVER" envDefault:"10" help:"attempts before an event is dead-lettered (>= 1)"`
	AutoCreate        bool   `env:"RAGPIPE_AUTO_CREATE" envDefault:"true" help:"create unknown collections on first event (true or false)"`
	ChunkSize         int    `env:"RAGPIPE_CHUNK_SIZE" envDefault:"2000" help:"largest chunk, in characters (>= 1)"`
	ChunkOverlap      int    `env:"RAGPIPE_CHUNK_OVERLAP" envDefault:"200" help:"overlap of consecutive chunks, in characters (0 to half of RAGPIPE_CHUNK_SIZE)"`
	MaxEventBytes     int    `env:"RAGPIPE_MAX_EVENT_BYTES" envDefault:"1048576" help:"largest accepted event, in bytes (>= 1)"`
	DataDir           string `env:"RAGPIPE_DATA_DIR" envDefault:"./ragpipe-data" help:"data of the embedded NATS server and embedded store (dev)"`
	LogLevel          string `env:"RAGPIPE_LOG_LEVEL" envDefault:"info" help:"log level: trace, debug, info, warn, error, fatal, panic or disabled"`
	HTTPAddr          string `env:"RAGPIPE_HTTP_ADDR" envDefault:":9090" help:"address of /healthz, /readyz and /metrics (host:port); set but empty disables"`
	Worker            Worker // ingestion worker tuning
}

// NATS holds the NATS connection settings.
type NATS struct {
	URL      string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222" help:"NATS servers, comma-separated nats://, tls://, ws:// or wss:// URLs"`
	Creds    string `env:"NATS_CREDS" help:"path of a NATS credentials file"`
	User     string `env:"NATS_USER" help:"NATS user"`
	Password string `env:"NATS_PASSWORD" help:"NATS password (secret)"`
	Token    string `env:"NATS_TOKEN" help:"NATS token (secret)"`
}

// Qdrant holds the Qdrant connection and write settings.
type Qdrant struct {
	URL string `env:"QDRANT_URL" envDefault:"http://localhost:6334" help:"Qdrant gRPC endpoint: http://host[:port] or https://host[:port] (TLS); port defaults to 6334"`
	// Host, Port and TLS are derived from URL by Load.
	Host string
	Port int
	TLS  bool
	// Explicit reports that QDRANT_URL was given (environment or profile)
	// rather than defaulted; ragpipe dev then uses Qdrant instead of its
	// embedded store. Derived by Load.
	Explicit      bool
	APIKey        string        `env:"QDRANT_API_KEY" help:"Qdrant API key (secret)"`
	Timeout       time.Duration `env:"QDRANT_TIMEOUT" envDefault:"30s" help:"per-request timeout (> 0)"`
	PoolSize      int           `env:"QDRANT_POOL_SIZE" envDefault:"3" help:"gRPC connections to Qdrant (>= 1)"`
	Compression   bool          `env:"QDRANT_COMPRESSION" envDefault:"false" help:"gzip on the gRPC connection (true or false)"`
	WriteOrdering string        `env:"QDRANT_WRITE_ORDERING" envDefault:"medium" help:"write ordering: weak, medium or strong"`
	// ReadConsistency is how many replicas of a shard answer a search.
	ReadConsistency string `env:"QDRANT_READ_CONSISTENCY" help:"replicas of a shard that must answer a search or list in a cluster: all, majority, quorum or a number; empty for Qdrant's default (one)"`
}

// Embedder selects and configures an embedding service: the default one, or
// an embedder profile, whose variables have the profile's name inserted (see
// ProfileVar).
type Embedder struct {
	Kind           string        `env:"RAGPIPE_EMBEDDER" envDefault:"hash" help:"hash (built-in, offline), openai (any OpenAI-compatible /v1/embeddings), ollama or tei"`
	URL            string        `env:"RAGPIPE_EMBEDDER_URL" help:"embedding service base URL, required unless hash (openai: with or without /v1; ollama, tei: the server root)"`
	Model          string        `env:"RAGPIPE_EMBEDDER_MODEL" help:"embedding model, required for openai and ollama; for tei it names the served model so that changing it re-embeds"`
	APIKey         string        `env:"RAGPIPE_EMBEDDER_API_KEY" help:"embedding service API key, sent as a bearer token (secret)"`
	BatchSize      int           `env:"RAGPIPE_EMBEDDER_BATCH_SIZE" envDefault:"32" help:"texts per request to the embedding service (>= 1; tei refuses more than its --max-client-batch-size, which is 32 unless set)"`
	Concurrency    int           `env:"RAGPIPE_EMBEDDER_CONCURRENCY" envDefault:"4" help:"requests in flight to the embedding service, per collection dimension (>= 1)"`
	Timeout        time.Duration `env:"RAGPIPE_EMBEDDER_TIMEOUT" envDefault:"30s" help:"per-request timeout of the embedding service (> 0)"`
	MaxRetryTime   time.Duration `env:"RAGPIPE_EMBEDDER_MAX_RETRY_TIME" envDefault:"60s" help:"how long a request is retried after 429, 5xx, timeouts and network errors, Retry-After honoured, before its events are redelivered later (> 0)"`
	Truncate       bool          `env:"RAGPIPE_EMBEDDER_TRUNCATE" envDefault:"true" help:"ollama, tei: truncate texts longer than the model's context instead of failing (true or false)"`
	SendDimensions bool          `env:"RAGPIPE_EMBEDDER_SEND_DIMENSIONS" envDefault:"false" help:"openai: send the collection's dimensions as the request's dimensions, for models that shorten their vectors such as text-embedding-3 (true or false)"`
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
	BatchSize      int           `env:"RAGPIPE_BATCH_SIZE" envDefault:"256" help:"messages per processing batch (>= 1)"`
	FlushInterval  time.Duration `env:"RAGPIPE_FLUSH_INTERVAL" envDefault:"20ms" help:"longest a partial batch waits (> 0)"`
	Concurrency    int           `env:"RAGPIPE_CONCURRENCY" envDefault:"4" help:"batches processed in parallel (>= 1)"`
	MaxAckPending  int           `env:"RAGPIPE_MAX_ACK_PENDING" envDefault:"0" help:"unacknowledged messages the consumer hands out; 0 means RAGPIPE_BATCH_SIZE*(RAGPIPE_CONCURRENCY+1)"`
	AckWait        time.Duration `env:"RAGPIPE_ACK_WAIT" envDefault:"30s" help:"time the server waits for an acknowledgement before redelivering (>= 1s)"`
	StreamReplicas int           `env:"RAGPIPE_STREAM_REPLICAS" envDefault:"1" help:"replicas of the streams ragpipe creates (1 to 5)"`
	DeferIndexing  int           `env:"RAGPIPE_DEFER_INDEXING" envDefault:"0" help:"while more than this many events wait, Qdrant collections being written build no HNSW index (indexing_threshold 0) until the backlog falls to a tenth of it, then get Qdrant's default back (10000 KB); 0 never defers"`
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

// Load reads settings from the environment (and the .env.<APP_ENV> profile), fills defaults and validates.
// The error, if any, is one line starting with "config: " that names every
// invalid variable and never shows a secret.
func Load() (*Config, error) {
	return LoadFrom(os.Environ(), ".")
}

// LoadFrom is Load with an explicit environment and working directory (for tests and tools).
// environ holds "KEY=value" entries, as os.Environ returns them.
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

var appEnvRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// environment merges environ over the .env.<APP_ENV> profile in dir, if any.
func environment(environ []string, dir string) (map[string]string, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			vars[k] = v
		}
	}
	appEnv := vars["APP_ENV"]
	if appEnv == "" {
		f, _ := reflect.TypeFor[Config]().FieldByName("AppEnv")
		appEnv = f.Tag.Get("envDefault")
	}
	if !appEnvRE.MatchString(appEnv) {
		return nil, fmt.Errorf("APP_ENV=%q: must be letters, digits, '.', '_' or '-', starting with a letter or digit", appEnv)
	}
	path := filepath.Join(dir, ".env."+appEnv)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return vars, nil
	}
	if err != nil {
		return nil, err
	}
	profile, err := godotenv.UnmarshalBytes(data)
	if err != nil {
		// godotenv's message quotes the file, which may hold secrets.
		return nil, fmt.Errorf("%s: invalid dotenv syntax (details withheld: the file may hold secrets)", path)
	}
	for k, v := range profile {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	vars["APP_ENV"] = appEnv
	return vars, nil
}

var collectionsType = reflect.TypeFor[[]pipeline.Collection]()

// parse fills a T from vars. A variable that does not parse is reported,
// under the name that display gives it, and then treated as unset, so that
// validation sees its default instead of a zero value and does not report it
// a second time. parse returns a nil T only for errors that are bugs in T's
// tags.
func parse[T any](vars map[string]string, display func(key string) string) (*T, []error) {
	opts := env.Options{
		Environment: vars,
		FuncMap:     map[reflect.Type]env.ParserFunc{collectionsType: parseCollections},
	}
	var cfg T
	err := env.ParseWithOptions(&cfg, opts)
	if err == nil {
		return &cfg, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return nil, []error{err}
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			return nil, append(errs, e)
		}
		key := keyOf(reflect.TypeFor[T](), pe)
		if key == "" {
			return nil, append(errs, e)
		}
		errs = append(errs, describe(display(key), vars[key], pe)...)
		delete(vars, key)
	}
	var zero T
	cfg = zero
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		return nil, append(errs, err)
	}
	return &cfg, errs
}

// keyOf returns the variable of the field of t a ParseError is about.
func keyOf(t reflect.Type, pe env.ParseError) string {
	var key string
	eachSetting(reflect.New(t).Elem(), func(f reflect.StructField, _ reflect.Value) {
		if key == "" && f.Name == pe.Name && f.Type == pe.Type {
			key = f.Tag.Get("env")
		}
	})
	return key
}

// parseProfiles reads the embedder profiles that collections name, appending
// their problems to errs.
func parseProfiles(vars map[string]string, collections []pipeline.Collection, errs []error) (map[string]Embedder, []error) {
	var profiles map[string]Embedder // nil when there is none
	for _, c := range collections {
		name := c.Embedder
		if _, done := profiles[name]; done || name == "" {
			continue
		}
		display := func(key string) string { return ProfileVar(key, name) }
		own := make(map[string]string) // by the default embedder's variables
		eachSetting(reflect.ValueOf(Embedder{}), func(f reflect.StructField, _ reflect.Value) {
			if v, ok := vars[display(f.Tag.Get("env"))]; ok {
				own[f.Tag.Get("env")] = v
			}
		})
		if own["RAGPIPE_EMBEDDER"] == "" {
			errs = append(errs, fmt.Errorf("%s: not set, but RAGPIPE_COLLECTIONS entry %q names embedder profile %q",
				display("RAGPIPE_EMBEDDER"), c.Name, name))
		}
		e, perrs := parse[Embedder](own, display)
		errs = append(errs, perrs...)
		if e != nil {
			if profiles == nil {
				profiles = make(map[string]Embedder)
			}
			profiles[name] = *e
		}
	}
	return profiles, errs
}

// layoutVars are the settings a collection may override, by their global variables.
var layoutVars = []string{"RAGPIPE_SHARDS", "RAGPIPE_REPLICATION_FACTOR", "RAGPIPE_WRITE_CONSISTENCY"}

// CollectionVar returns the variable that sets, for one collection, the
// layout setting whose global variable is name: RAGPIPE_SHARDS becomes
// RAGPIPE_COLLECTION_<NAME>_SHARDS, the name upper-cased with '-' as '_'.
func CollectionVar(name, collection string) string {
	return "RAGPIPE_COLLECTION_" + strings.ToUpper(strings.ReplaceAll(collection, "-", "_")) + strings.TrimPrefix(name, "RAGPIPE")
}

// parseLayouts reads the per-collection layout variables into
// cfg.Collections, appending their problems to errs. A variable that names
// no configured collection is a problem too: it is most likely a typo.
func parseLayouts(vars map[string]string, cfg *Config, errs []error) []error {
	known := map[string]bool{}
	for i := range cfg.Collections {
		c := &cfg.Collections[i]
		for j, name := range layoutVars {
			key := CollectionVar(name, c.Name)
			if known[key] {
				errs = append(errs, fmt.Errorf("%s: two collections of RAGPIPE_COLLECTIONS share this variable; rename one", key))
			}
			known[key] = true
			v, ok := vars[key]
			if !ok || v == "" {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q: must be an integer >= 1", key, v))
				continue
			}
			*[]*uint32{&c.Shards, &c.ReplicationFactor, &c.WriteConsistency}[j] = uint32(n)
		}
		if wc, rf := cmp.Or(c.WriteConsistency, cfg.WriteConsistency), cmp.Or(c.ReplicationFactor, cfg.ReplicationFactor); wc > rf {
			errs = append(errs, fmt.Errorf("collection %q: write consistency %d exceeds its replication factor %d (%s, %s)",
				c.Name, wc, rf, CollectionVar("RAGPIPE_WRITE_CONSISTENCY", c.Name), CollectionVar("RAGPIPE_REPLICATION_FACTOR", c.Name)))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(vars)) {
		if strings.HasPrefix(key, "RAGPIPE_COLLECTION_") && !known[key] {
			errs = append(errs, fmt.Errorf("%s: names no collection of RAGPIPE_COLLECTIONS or no layout setting (SHARDS, REPLICATION_FACTOR, WRITE_CONSISTENCY)", key))
		}
	}
	return errs
}

// describe turns a ParseError into messages naming the variable and the
// accepted form. Only non-string fields fail to parse, and no secret is one,
// so the value may be shown.
func describe(key, val string, pe env.ParseError) []error {
	if joined, ok := pe.Err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, err := range joined.Unwrap() {
			errs = append(errs, fmt.Errorf("%s %w", key, err))
		}
		return errs
	}
	want := pe.Err.Error()
	switch kind := pe.Type.Kind(); {
	case pe.Type == reflect.TypeFor[time.Duration]():
		want = "not a duration (such as 500ms, 30s or 2m)"
	case errors.Is(pe.Err, strconv.ErrRange):
		want = "out of range"
	case kind == reflect.Bool:
		want = "not a boolean (true or false)"
	case kind >= reflect.Int && kind <= reflect.Int64:
		want = "not an integer"
	case kind >= reflect.Uint && kind <= reflect.Uint64:
		want = "not a non-negative integer"
	}
	return []error{fmt.Errorf("%s=%q: %s", key, val, want)}
}

var (
	collectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	profileNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// parseCollections parses RAGPIPE_COLLECTIONS, reporting every bad entry.
func parseCollections(s string) (any, error) {
	var (
		cs   []pipeline.Collection
		errs []error
		seen = map[string]bool{}
	)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		parts := strings.Split(entry, ":")
		if len(parts) != 3 && len(parts) != 4 {
			errs = append(errs, fmt.Errorf("entry %q: must be name:dims:distance[:profile], such as documents:1024:cosine", entry))
			continue
		}
		var profile string
		if len(parts) == 4 {
			profile = strings.ToLower(parts[3])
		}
		name, dist := parts[0], pipeline.Distance(strings.ToLower(parts[2]))
		dims, err := strconv.Atoi(parts[1])
		bad := len(errs)
		if !collectionNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("entry %q: name must be 1-64 characters of a-z 0-9 _ -, starting with a letter", entry))
		}
		if err != nil || dims < 1 || dims > 65536 {
			errs = append(errs, fmt.Errorf("entry %q: dims must be an integer from 1 to 65536", entry))
		}
		if !slices.Contains([]pipeline.Distance{pipeline.Cosine, pipeline.Dot, pipeline.Euclid, pipeline.Manhattan}, dist) {
			errs = append(errs, fmt.Errorf("entry %q: distance must be cosine, dot, euclid or manhattan", entry))
		}
		if len(parts) == 4 && !profileNameRE.MatchString(profile) {
			errs = append(errs, fmt.Errorf("entry %q: profile must be 1-32 letters, digits or _, starting with a letter", entry))
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("entry %q: collection %q is listed twice", entry, name))
		}
		seen[name] = true
		if len(errs) == bad {
			cs = append(cs, pipeline.Collection{Name: name, Dims: dims, Distance: dist, Embedder: profile})
		}
	}
	return cs, errors.Join(errs...)
}

// checker collects the problems of settings that fail their checks.
type checker []error

// check records the problem described by format and args unless ok.
func (c *checker) check(ok bool, format string, args ...any) {
	if !ok {
		*c = append(*c, fmt.Errorf(format, args...))
	}
}

// validate derives the Qdrant endpoint and reports every invalid setting.
func (c *Config) validate() []error {
	var errs checker
	check := errs.check
	for u := range strings.SplitSeq(c.NATS.URL, ",") {
		check(validNATSURL(strings.TrimSpace(u)),
			"NATS_URL entry %q: must be a nats://, tls://, ws:// or wss:// URL with a host, such as nats://127.0.0.1:4222", redactURL(strings.TrimSpace(u)))
	}
	var ok bool
	c.Qdrant.Host, c.Qdrant.Port, c.Qdrant.TLS, ok = ParseQdrantURL(c.Qdrant.URL)
	check(ok, "QDRANT_URL=%q: must be http://host[:port] or https://host[:port] (https means TLS, port defaults to 6334)", redactURL(c.Qdrant.URL))
	check(c.Qdrant.Timeout > 0, "QDRANT_TIMEOUT=%s: must be > 0", c.Qdrant.Timeout)
	check(c.Qdrant.PoolSize >= 1, "QDRANT_POOL_SIZE=%d: must be >= 1", c.Qdrant.PoolSize)
	check(slices.Contains([]string{"weak", "medium", "strong"}, c.Qdrant.WriteOrdering),
		"QDRANT_WRITE_ORDERING=%q: must be weak, medium or strong", c.Qdrant.WriteOrdering)
	replicas, rcErr := strconv.ParseUint(c.Qdrant.ReadConsistency, 10, 32)
	check(c.Qdrant.ReadConsistency == "" || slices.Contains([]string{"all", "majority", "quorum"}, c.Qdrant.ReadConsistency) || (rcErr == nil && replicas >= 1),
		"QDRANT_READ_CONSISTENCY=%q: must be all, majority, quorum or a number >= 1", c.Qdrant.ReadConsistency)
	errs = append(errs, c.Embedder.validate(func(key string) string { return key })...)
	for _, name := range slices.Sorted(maps.Keys(c.Profiles)) {
		errs = append(errs, c.Profiles[name].validate(func(key string) string { return ProfileVar(key, name) })...)
	}
	check(validSubjectPrefix(c.SubjectPrefix),
		"RAGPIPE_SUBJECT_PREFIX=%q: must be NATS subject tokens separated by dots, without wildcards (* >) or spaces", c.SubjectPrefix)
	check(c.HNSW == "tenant" || c.HNSW == "global", "RAGPIPE_HNSW=%q: must be tenant or global", c.HNSW)
	check(c.Shards >= 1, "RAGPIPE_SHARDS=%d: must be >= 1", c.Shards)
	check(c.ReplicationFactor >= 1, "RAGPIPE_REPLICATION_FACTOR=%d: must be >= 1", c.ReplicationFactor)
	check(c.WriteConsistency >= 1 && (c.ReplicationFactor < 1 || c.WriteConsistency <= c.ReplicationFactor),
		"RAGPIPE_WRITE_CONSISTENCY=%d: must be >= 1 and <= RAGPIPE_REPLICATION_FACTOR (%d)", c.WriteConsistency, c.ReplicationFactor)
	check(c.MaxDeliver >= 1, "RAGPIPE_MAX_DELIVER=%d: must be >= 1", c.MaxDeliver)
	check(c.ChunkSize >= 1, "RAGPIPE_CHUNK_SIZE=%d: must be >= 1", c.ChunkSize)
	// A larger overlap multiplies the chunks: size/(size-overlap) per window.
	check(c.ChunkOverlap >= 0 && (c.ChunkSize < 1 || c.ChunkOverlap <= c.ChunkSize/2),
		"RAGPIPE_CHUNK_OVERLAP=%d: must be from 0 to half of RAGPIPE_CHUNK_SIZE (%d)", c.ChunkOverlap, c.ChunkSize/2)
	check(c.MaxEventBytes >= 1, "RAGPIPE_MAX_EVENT_BYTES=%d: must be >= 1", c.MaxEventBytes)
	_, err := zerolog.ParseLevel(c.LogLevel)
	check(err == nil, "RAGPIPE_LOG_LEVEL=%q: must be trace, debug, info, warn, error, fatal, panic or disabled", c.LogLevel)
	if c.HTTPAddr != "" {
		_, _, err := net.SplitHostPort(c.HTTPAddr)
		check(err == nil, "RAGPIPE_HTTP_ADDR=%q: must be host:port or :port, or set but empty to disable", c.HTTPAddr)
	}
	w := c.Worker
	check(w.BatchSize >= 1, "RAGPIPE_BATCH_SIZE=%d: must be >= 1", w.BatchSize)
	check(w.FlushInterval > 0, "RAGPIPE_FLUSH_INTERVAL=%s: must be > 0", w.FlushInterval)
	check(w.Concurrency >= 1, "RAGPIPE_CONCURRENCY=%d: must be >= 1", w.Concurrency)
	check(w.MaxAckPending >= 0,
		"RAGPIPE_MAX_ACK_PENDING=%d: must be >= 0 (0 means RAGPIPE_BATCH_SIZE*(RAGPIPE_CONCURRENCY+1))", w.MaxAckPending)
	check(w.AckWait >= time.Second, "RAGPIPE_ACK_WAIT=%s: must be >= 1s", w.AckWait)
	check(w.StreamReplicas >= 1 && w.StreamReplicas <= 5, "RAGPIPE_STREAM_REPLICAS=%d: must be from 1 to 5", w.StreamReplicas)
	check(w.DeferIndexing >= 0, "RAGPIPE_DEFER_INDEXING=%d: must be >= 0 (0 never defers)", w.DeferIndexing)
	return errs
}

// validate reports every invalid setting of an embedder whose variables name
// gives.
func (e Embedder) validate(name func(key string) string) []error {
	var errs checker
	check := errs.check
	check(slices.Contains([]string{"hash", "openai", "ollama", "tei"}, e.Kind),
		"%s=%q: must be hash, openai, ollama or tei", name("RAGPIPE_EMBEDDER"), e.Kind)
	if e.Kind != "hash" {
		u, err := url.Parse(e.URL)
		check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "",
			"%s=%q: must be an http:// or https:// URL with a host (%s needs one)", name("RAGPIPE_EMBEDDER_URL"), redactURL(e.URL), e.Kind)
		check(e.Model != "" || e.Kind == "tei", "%s: required for %s", name("RAGPIPE_EMBEDDER_MODEL"), e.Kind)
	}
	check(e.BatchSize >= 1, "%s=%d: must be >= 1", name("RAGPIPE_EMBEDDER_BATCH_SIZE"), e.BatchSize)
	check(e.Concurrency >= 1, "%s=%d: must be >= 1", name("RAGPIPE_EMBEDDER_CONCURRENCY"), e.Concurrency)
	check(e.Timeout > 0, "%s=%s: must be > 0", name("RAGPIPE_EMBEDDER_TIMEOUT"), e.Timeout)
	check(e.MaxRetryTime > 0, "%s=%s: must be > 0", name("RAGPIPE_EMBEDDER_MAX_RETRY_TIME"), e.MaxRetryTime)
	return errs
}

func validNATSURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) && u.Hostname() != ""
}

// ParseQdrantURL splits http(s)://host[:port] (the form of QDRANT_URL) into
// its parts; ok is false for any other form.
func ParseQdrantURL(s string) (host string, port int, tls, ok bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", 0, false, false
	}
	port = 6334
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
			return "", 0, false, false
		}
	}
	return u.Hostname(), port, u.Scheme == "https", true
}

func validSubjectPrefix(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool {
			return r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
		}) {
			return false
		}
	}
	return true
}

const redacted = "REDACTED"

// Redacted returns a copy of c with every secret that is set replaced by
// "REDACTED": the API keys (embedder profiles' included), the NATS password
// and token, and credentials in the userinfo of NATS_URL, QDRANT_URL and the
// embedders' URLs.
func (c Config) Redacted() Config {
	profiles := make(map[string]Embedder, len(c.Profiles))
	for name, e := range c.Profiles {
		e.APIKey, e.URL = redactKey(e.APIKey), redactURL(e.URL)
		profiles[name] = e
	}
	if c.Profiles != nil {
		c.Profiles = profiles
	}
	for _, s := range []*string{&c.NATS.Password, &c.NATS.Token, &c.Qdrant.APIKey, &c.Embedder.APIKey} {
		*s = redactKey(*s)
	}
	for _, s := range []*string{&c.NATS.URL, &c.Qdrant.URL, &c.Embedder.URL} {
		urls := strings.Split(*s, ",")
		for i, u := range urls {
			urls[i] = redactURL(u)
		}
		*s = strings.Join(urls, ",")
	}
	return c
}

// redactKey hides a secret that is set.
func redactKey(s string) string {
	if s == "" {
		return s
	}
	return redacted
}

// redactURL hides the password of a URL's userinfo, or the whole userinfo
// when it is a lone name (NATS reads that as a token). A value with an "@"
// that does not parse as a URL with userinfo is hidden whole.
func redactURL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		return redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
	} else {
		u.User = url.User(redacted)
	}
	return u.String()
}

// String prints the redacted settings as space-separated VARIABLE=value pairs.
func (c Config) String() string {
	var b strings.Builder
	c.Redacted().each(func(key string, val any) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", key, val)
	})
	return b.String()
}

// MarshalZerologObject logs the redacted settings, one field per variable,
// so that a Config can be passed to zerolog's Object.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	c.Redacted().each(func(key string, val any) { e.Interface(key, val) })
}

// each calls fn with every variable and its value in c, durations and
// collections in their environment form, the embedder profiles' last.
func (c Config) each(fn func(key string, val any)) {
	eachSetting(reflect.ValueOf(c), func(f reflect.StructField, v reflect.Value) {
		fn(f.Tag.Get("env"), envForm(v.Interface()))
	})
	for _, name := range slices.Sorted(maps.Keys(c.Profiles)) {
		eachSetting(reflect.ValueOf(c.Profiles[name]), func(f reflect.StructField, v reflect.Value) {
			fn(ProfileVar(f.Tag.Get("env"), name), envForm(v.Interface()))
		})
	}
}

// envForm returns val as it is written in the environment where that differs
// from fmt's %v.
func envForm(val any) any {
	switch x := val.(type) {
	case time.Duration:
		return x.String()
	case []pipeline.Collection:
		s := make([]string, len(x))
		for i, c := range x {
			s[i] = fmt.Sprintf("%s:%d:%s", c.Name, c.Dims, c.Distance)
			if c.Embedder != "" {
				s[i] += ":" + c.Embedder
			}
		}
		return strings.Join(s, ",")
	}
	return val
}

// eachSetting calls fn for every field of the struct v that has an env tag,
// in declaration order, descending into the setting groups.
func eachSetting(v reflect.Value, fn func(reflect.StructField, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		switch f := t.Field(i); {
		case f.Tag.Get("env") != "":
			fn(f, v.Field(i))
		case f.Type.Kind() == reflect.Struct:
			eachSetting(v.Field(i), fn)
		}
	}
}

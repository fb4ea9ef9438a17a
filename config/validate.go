package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/keyring"
)

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
	check(c.Qdrant.QueriesInFlight >= 0, "QDRANT_QUERIES_IN_FLIGHT=%d: must be >= 0", c.Qdrant.QueriesInFlight)
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
	check(c.MaxCollections >= 1, "RAGPIPE_MAX_COLLECTIONS=%d: must be >= 1", c.MaxCollections)
	check(c.ShutdownTimeout > 0, "RAGPIPE_SHUTDOWN_TIMEOUT=%s: must be > 0", c.ShutdownTimeout)
	if err := c.loadMasterKeys(); err != nil {
		errs = append(errs, err)
	}
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
	check(slices.Contains([]string{"builtin", "hash", "openai", "ollama", "tei"}, e.Kind),
		"%s=%q: must be builtin, hash, openai, ollama or tei", name("RAGPIPE_EMBEDDER"), e.Kind)
	if e.Kind != "builtin" && e.Kind != "hash" {
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

// loadMasterKeys reads the master key file RAGPIPE_ENCRYPTION_KEY_FILE
// names, if any, into MasterKeys. Its error names the file and the line,
// never a key.
func (c *Config) loadMasterKeys() error {
	if c.EncryptionKeyFile == "" {
		return nil
	}
	data, err := os.ReadFile(c.EncryptionKeyFile)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err // the path is named below
	}
	if err == nil {
		c.MasterKeys, err = keyring.ParseMasterKeys(data)
	}
	if err != nil {
		return fmt.Errorf("RAGPIPE_ENCRYPTION_KEY_FILE=%s: %w", c.EncryptionKeyFile, err)
	}
	return nil
}

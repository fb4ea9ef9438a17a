package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/keyring"
)

// startNATSServer runs a NATS server with JetStream inside this process,
// listening on the address of the first NATS_URL so that producers, `ragpipe
// publish` and `ragpipe query` can connect, storing under dataDir/nats, and
// requiring the NATS_TOKEN or NATS_USER/NATS_PASSWORD clients are given.
// opts adjust the server's options before it starts (storeEncryption). It
// fails when the server could not open every stream found in its store.
func startNATSServer(cfg config.NATS, dataDir string, log zerolog.Logger, opts ...serverOption) (*server.Server, error) {
	first, _, _ := strings.Cut(cfg.URL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("NATS_URL=%s: %w", first, err)
	}
	port := 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("NATS_URL=%s: bad port: %w", first, err)
		}
	}
	addr := net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr) // fail fast and clearly on a taken port
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server cannot listen on %s (NATS_URL): %w", addr, err)
	}
	ln.Close()
	o := &server.Options{
		ServerName:    "ragpipe-dev",
		Host:          u.Hostname(),
		Port:          port,
		JetStream:     true,
		StoreDir:      filepath.Join(dataDir, "nats"),
		NoSigs:        true, // ragpipe handles SIGINT and SIGTERM
		Authorization: cfg.Token,
		Username:      cfg.User,
		Password:      cfg.Password,
	}
	var opened []func() error
	for _, opt := range opts {
		after, err := opt(o)
		if err != nil {
			return nil, err
		}
		if after != nil {
			opened = append(opened, after)
		}
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server: not listening on %s within 10s", addr)
	}
	if err := checkStreamsOpened(s, o.StoreDir); err != nil {
		s.Shutdown()
		return nil, err
	}
	for _, after := range opened {
		if err := after(); err != nil {
			s.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// serverOption adjusts the embedded server's options before it starts; the
// function it returns, if not nil, runs once the server has opened its store.
type serverOption func(*server.Options) (opened func() error, err error)

// checkStreamsOpened fails when the server opened fewer streams than its
// store holds: it skips, with a warning only, a stream it cannot decrypt
// (a wrong key) or read, and ragpipe would then recreate it empty.
func checkStreamsOpened(s *server.Server, storeDir string) error {
	dir := filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // a new store
	}
	onDisk := 0
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") { // "." marks a stream being deleted
			onDisk++
		}
	}
	info, err := s.Jsz(nil)
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	if info.Streams < onDisk {
		return fmt.Errorf("embedded NATS server opened %d of the %d streams in %s: see its warnings in the log (a store encrypted with another key?)",
			info.Streams, onDisk, dir)
	}
	return nil
}

// storeEncryptionMarker, in the embedded server's store directory, names
// the master key its JetStream encryption key is derived from.
const storeEncryptionMarker = "ragpipe-encryption"

// storeEncryption turns on JetStream's encryption at rest (ChaCha20-Poly1305)
// for the embedded server when master is set, with a key derived from the
// first master key by HKDF; the second master key's, if any, is the server's
// previous key, so that after a master key rotation the server re-encrypts
// its store under the new one as it opens it. A store without encryption is
// encrypted as the server opens it. A marker file records which master key
// the store is encrypted under, so that a store opened without that key (key
// file unset, or the key no longer among the first two) fails with a clear
// error instead of losing its streams.
func storeEncryption(master *keyring.MasterKeys) serverOption {
	return func(o *server.Options) (func() error, error) {
		marker := filepath.Join(o.StoreDir, storeEncryptionMarker)
		data, err := os.ReadFile(marker)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("embedded NATS store: %w", err)
		}
		was := strings.TrimSpace(string(data))
		if master == nil {
			if was != "" {
				return nil, fmt.Errorf("the embedded NATS store in %s is encrypted under master key %s: set RAGPIPE_ENCRYPTION_KEY_FILE to a file holding it", o.StoreDir, was)
			}
			return nil, nil
		}
		ids := master.IDs()
		if was != "" && was != ids[0] && (len(ids) < 2 || was != ids[1]) {
			return nil, fmt.Errorf("the embedded NATS store in %s is encrypted under master key %s, which is neither the first nor the second key of RAGPIPE_ENCRYPTION_KEY_FILE (%s)",
				o.StoreDir, was, strings.Join(ids, ","))
		}
		key, _ := master.Derive(0, "jetstream", 32)
		o.JetStreamKey, o.JetStreamCipher = hex.EncodeToString(key), server.ChaCha
		if old, ok := master.Derive(1, "jetstream", 32); ok {
			o.JetStreamOldKey = hex.EncodeToString(old)
		}
		return func() error { // the store opened: it is encrypted under ids[0] now
			if err := os.WriteFile(marker, []byte(ids[0]+"\n"), 0o600); err != nil {
				return fmt.Errorf("embedded NATS store: %w", err)
			}
			return nil
		}, nil
	}
}

// natsLogger passes the embedded server's notices, warnings and errors to zerolog.
type natsLogger struct{ log zerolog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
)

// startNATSServer runs a NATS server with JetStream inside this process,
// listening on the address of the first NATS_URL so that producers, `ragpipe
// publish` and `ragpipe query` can connect, storing under dataDir/nats, and
// requiring the NATS_TOKEN or NATS_USER/NATS_PASSWORD clients are given.
func startNATSServer(cfg config.NATS, dataDir string, log zerolog.Logger) (*server.Server, error) {
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
	opts := &server.Options{
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
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server: not listening on %s within 10s", addr)
	}
	return s, nil
}

// natsLogger passes the embedded server's notices, warnings and errors to zerolog.
type natsLogger struct{ log zerolog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

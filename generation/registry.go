package generation

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Config configures a Registry; zero fields take the documented defaults.
type Config struct {
	// Replicas of the bucket, as the version register's. Default 1.
	Replicas int
	// Logger receives a line for every State change seen. The zero Logger
	// discards them.
	Logger zerolog.Logger
}

// Registry reads and updates the States of Bucket. It keeps the newest
// State of every collection, watched, for the many reads that need no more
// (Cached), and reads the bucket's stream leader when a read must see every
// update made before it began (Current). It is safe for concurrent use.
type Registry struct {
	kv jetstream.KeyValue
}

// ErrNoChange, returned by Update's function, leaves the State as it is.
var ErrNoChange = errors.New("no change")

// Open creates the bucket when it is missing and returns once the States
// present are loaded; the watch runs until Close.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Registry, error) {
	panic("not yet")
}

// Cached returns the newest State of collection the watch has seen; ok is
// false when it has none. It never blocks.
func (r *Registry) Cached(collection string) (s State, ok bool) { panic("not yet") }

// All returns every cached State, by collection.
func (r *Registry) All() []State { panic("not yet") }

// Current returns collection's State as the bucket's stream leader has it:
// every update made before the call began is seen. ok is false when it has
// none.
func (r *Registry) Current(ctx context.Context, collection string) (s State, ok bool, err error) {
	panic("not yet")
}

// Update applies fn to collection's current State (the zero State, with
// exists false, when it has none) and stores the result if no one else
// updated it meanwhile, reading and applying again otherwise. fn returning
// ErrNoChange leaves the State as it is and Update returns it with a nil
// error; any other error is returned as it is.
func (r *Registry) Update(ctx context.Context, collection string, fn func(s *State, exists bool) error) (State, error) {
	panic("not yet")
}

// Close stops the watch.
func (r *Registry) Close() error { panic("not yet") }

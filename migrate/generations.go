package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Generations is what Place needs of a target store; the Qdrant store and
// the embedded store implement it.
type Generations interface {
	// EnsureCollection creates the collection with the target's layout
	// (create=true on a missing name makes <name>__g1 plus the alias
	// <name>), or checks it (create=false).
	EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error
	// AliasTarget returns the collection the alias name points at; "" when
	// name is not an alias.
	AliasTarget(ctx context.Context, name string) (string, error)
	// CreateGeneration creates collection c under exactly its name, unless
	// it exists with c's dimensions and distance.
	CreateGeneration(ctx context.Context, c pipeline.Collection) error
	// SwitchAlias points alias at collection, creating the alias when
	// missing; it fails wrapping pipeline.ErrNameTaken when a collection
	// has the alias' name.
	SwitchAlias(ctx context.Context, alias, collection string) error
}

// aliaser resolves an alias (Source.AliasTarget).
type aliaser interface {
	AliasTarget(ctx context.Context, name string) (string, error)
}

// Serving returns the store collection serving the ragpipe collection name
// in s: the one fromState names when it names one, else the target of the
// alias name, else name itself (a plain collection, generation 0).
// fromState may be nil.
func Serving(ctx context.Context, s aliaser, name string, fromState func(context.Context, string) (string, error)) (string, error) {
	if fromState != nil {
		g, err := fromState(ctx, name)
		if err != nil {
			return "", fmt.Errorf("generation state of %q: %w", name, err)
		}
		if g != "" {
			return g, nil
		}
	}
	g, err := s.AliasTarget(ctx, name)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", name, err)
	}
	if g == "" {
		return name, nil
	}
	return g, nil
}

// Place makes the target hold c (its name the ragpipe collection's) served
// by the store collection serving, and returns the store collection to
// write:
//   - serving is c.Name (a plain source collection): EnsureCollection, as
//     ragpipe creates collections (<name>__g1 plus the alias), writing by
//     c.Name;
//   - the target has a plain collection named c.Name: it is used as it is
//     (an alias cannot take a collection's name), and logged;
//   - else the target gets the collection serving (CreateGeneration with
//     c's dimensions, distance and keyword vectors, laid out as the target
//     is configured) and the alias c.Name is pointed at it; an alias that
//     pointed elsewhere is switched and its old target left as it is.
//
// Place is idempotent: a resumed copy calls it again.
func Place(ctx context.Context, t Generations, c pipeline.Collection, serving string, log zerolog.Logger) (string, error) {
	c.Shards, c.ReplicationFactor, c.WriteConsistency = 0, 0, 0 // the target's configured layout
	if serving == c.Name {
		return c.Name, t.EnsureCollection(ctx, c, true)
	}
	current, err := t.AliasTarget(ctx, c.Name)
	if err != nil {
		return "", fmt.Errorf("resolve target %q: %w", c.Name, err)
	}
	if current == "" {
		switch err := t.EnsureCollection(ctx, c, false); {
		case err == nil:
			log.Warn().Str("generation", serving).
				Msg("the target has a plain collection of this name; copied into it, without the source's generation name")
			return c.Name, nil
		case !errors.Is(err, pipeline.ErrUnknownCollection):
			return "", err
		}
	}
	g := c
	g.Name = serving
	if err := t.CreateGeneration(ctx, g); err != nil {
		return "", fmt.Errorf("create generation %q: %w", serving, err)
	}
	if current == serving {
		return serving, nil
	}
	if err := t.SwitchAlias(ctx, c.Name, serving); err != nil {
		return "", fmt.Errorf("alias %q to %q: %w", c.Name, serving, err)
	}
	if current != "" {
		log.Warn().Str("previous", current).Str("generation", serving).
			Msg("the target's alias pointed at another generation; switched, the previous one left as it is")
	}
	return serving, nil
}

package qdrantstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// This file holds what a reindex needs of Qdrant (reindex.Store) besides the
// reads every store has: generations are plain Qdrant collections, and the
// ragpipe name of a collection created since generations exist is a Qdrant
// alias of its serving generation. Qdrant resolves an alias in every request
// on points, payload indexes and collection configuration, so reads and
// writes by the ragpipe name reach the alias' target.

// CreateGeneration creates collection c under exactly its name, with keyword
// vectors unless Config.NoKeywords (c.Keywords is ignored), the payload
// indexes and c's shards and replication factor (the configured ones where
// zero), unless it exists with c's dimensions and distance (kept with or
// without keyword vectors, as it was created); with others, or when c.Name
// is an alias, it fails permanently. Transient failures are retried for up
// to MaxRetryTime.
func (q *Store) CreateGeneration(ctx context.Context, c pipeline.Collection) error {
	c, err := checked(c)
	if err != nil {
		return err
	}
	// Creating first refuses an alias' name, which a read would resolve.
	if err := q.create(ctx, c, !q.cfg.NoKeywords); err != nil {
		return err
	}
	info, err := q.createdInfo(ctx, c.Name)
	if err != nil {
		return err
	}
	return q.verify(ctx, c, info)
}

// AliasTarget returns the collection the alias name points at; "" when name
// is not an alias (a plain collection or nothing). Transient failures are
// retried for up to MaxRetryTime.
func (q *Store) AliasTarget(ctx context.Context, name string) (string, error) {
	aliases, err := q.aliases(ctx)
	return aliases[name], err
}

// aliases returns every alias in Qdrant, mapped to its collection.
func (q *Store) aliases(ctx context.Context) (map[string]string, error) {
	var list []*qdrant.AliasDescription
	err := q.retry(ctx, "list aliases", "", func(ctx context.Context) (err error) {
		list, err = q.client.ListAliases(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, a := range list {
		out[a.GetAliasName()] = a.GetCollectionName()
	}
	return out, nil
}

// SwitchAlias points alias at collection with one request, which deletes
// the alias (when it exists) and creates it anew: Qdrant applies the actions
// of one request together, so every request by the alias reaches either the
// old collection or the new one, never none. Qdrant keeps the deletion when
// the creation fails, so the names are checked first: a collection named
// like the alias gives a permanent error wrapping pipeline.ErrNameTaken, a
// missing collection (or an alias) one wrapping pipeline.ErrUnknownCollection,
// and the alias is left as it was; should the collection vanish between the
// check and the switch, the alias is pointed back at its old target. What
// this process remembers of both names is forgotten. Transient failures are
// retried for up to MaxRetryTime (the switch is idempotent).
func (q *Store) SwitchAlias(ctx context.Context, alias, collection string) error {
	if alias == "" || collection == "" || alias == collection {
		return pipeline.Permanent(fmt.Errorf("qdrant alias %q to collection %q: invalid", alias, collection))
	}
	start := time.Now()
	collections, aliases, err := q.listing(ctx)
	if err != nil {
		return err
	}
	switch {
	case slices.Contains(collections, alias):
		return pipeline.Permanent(fmt.Errorf("qdrant alias %q: %w", alias, pipeline.ErrNameTaken))
	case !slices.Contains(collections, collection):
		return pipeline.Permanent(fmt.Errorf("qdrant alias %q: collection %q: %w", alias, collection, pipeline.ErrUnknownCollection))
	}
	err = q.updateAliases(ctx, alias, qdrant.NewAliasDelete(alias), qdrant.NewAliasCreate(alias, collection))
	q.forgetNames(alias, collection)
	if err != nil {
		if old := aliases[alias]; old != "" && !Retryable(err) {
			if rerr := q.updateAliases(ctx, alias, qdrant.NewAliasCreate(alias, old)); rerr != nil {
				q.log.Error().Err(rerr).Str("alias", alias).Str("collection", old).Msg("alias lost by a failed switch, not restored")
			}
		}
		if isCode(err, codes.AlreadyExists) {
			return pipeline.Permanent(fmt.Errorf("qdrant alias %q: %w: %w", alias, pipeline.ErrNameTaken, err))
		}
		return q.readError(collection, err)
	}
	q.log.Info().Str("alias", alias).Str("collection", collection).Str("previous", aliases[alias]).
		Dur("took", time.Since(start)).Msg("qdrant alias switched")
	return nil
}

// aliasFirst creates alias to collection unless alias exists already: a
// racing creator's alias, or one a reindex has switched since, is used as
// it is (Qdrant's create would silently repoint it). A plain collection
// named alias, created meanwhile, is used as it is too.
func (q *Store) aliasFirst(ctx context.Context, alias, collection string) error {
	target, err := q.AliasTarget(ctx, alias)
	switch {
	case err != nil:
		return err
	case target != "":
		if target != collection {
			q.log.Info().Str("alias", alias).Str("collection", target).Msg("alias exists already; used as it is")
		}
		return nil
	}
	err = q.updateAliases(ctx, alias, qdrant.NewAliasCreate(alias, collection))
	if isCode(err, codes.AlreadyExists) {
		return nil
	}
	if err == nil {
		q.log.Info().Str("alias", alias).Str("collection", collection).Msg("created qdrant alias")
	}
	return err
}

// updateAliases sends actions in one request, retried as every call is.
func (q *Store) updateAliases(ctx context.Context, alias string, actions ...*qdrant.AliasOperations) error {
	req := &qdrant.ChangeAliases{Actions: actions, Timeout: q.timeoutSeconds()}
	return q.retry(ctx, "update aliases", alias, func(ctx context.Context) error {
		_, err := q.client.GetCollectionsClient().UpdateAliases(ctx, req)
		return err
	})
}

// DropCollection deletes collection name and its points, and with it the
// aliases that point at it; a missing collection is no error, an alias'
// name a permanent one (drop its target). What this process remembers of
// the collection and its aliases is forgotten. Transient failures are
// retried for up to MaxRetryTime.
func (q *Store) DropCollection(ctx context.Context, name string) error {
	aliases, err := q.aliases(ctx)
	if err != nil {
		return err
	}
	if target := aliases[name]; target != "" {
		return pipeline.Permanent(fmt.Errorf("qdrant drop %q: an alias of collection %q, not a collection", name, target))
	}
	affected := []string{name}
	for a, target := range aliases {
		if target == name {
			affected = append(affected, a)
		}
	}
	dropped := false
	req := &qdrant.DeleteCollection{CollectionName: name, Timeout: q.timeoutSeconds()}
	err = q.retry(ctx, "drop collection", name, func(ctx context.Context) error {
		r, err := q.client.GetCollectionsClient().Delete(ctx, req)
		dropped = dropped || r.GetResult() // false: missing, or dropped by an earlier attempt
		return err
	})
	q.forgetNames(affected...)
	if err == nil && dropped {
		q.log.Info().Str("collection", name).Strs("aliases", affected[1:]).Msg("dropped qdrant collection")
	}
	return err
}

// timeoutSeconds is how long Qdrant may wait for its cluster to agree on a
// change of collections or aliases.
func (q *Store) timeoutSeconds() *uint64 {
	return qdrant.PtrOf(uint64(max(q.cfg.Timeout/time.Second, 1)))
}

// listing returns the names of Qdrant's collections and its aliases, read
// in that order: a collection created with its alias meanwhile is then seen
// with the alias.
func (q *Store) listing(ctx context.Context) (collections []string, aliases map[string]string, err error) {
	err = q.retry(ctx, "list", "", func(ctx context.Context) (err error) {
		collections, err = q.client.ListCollections(ctx)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	aliases, err = q.aliases(ctx)
	return collections, aliases, err
}

// ragpipeNames returns the names ragpipe knows collections by, sorted:
// every alias, every collection no alias points at, except the generations
// (x__gN) of a name x that exists as an alias or a collection.
func ragpipeNames(collections []string, aliases map[string]string) []string {
	exists := make(map[string]bool, len(collections)+len(aliases))
	targeted := make(map[string]bool, len(aliases))
	out := make([]string, 0, len(collections))
	for a, c := range aliases {
		exists[a], targeted[c] = true, true
		out = append(out, a)
	}
	for _, c := range collections {
		exists[c] = true
	}
	for _, c := range collections {
		if x, _, ok := generation.Parse(c); targeted[c] || ok && exists[x] {
			continue
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// generationsOf returns the generations collection__gN of the ragpipe
// collection name among collections, sorted.
func generationsOf(name string, collections []string) []string {
	var out []string
	for _, c := range collections {
		if x, _, ok := generation.Parse(c); ok && x == name {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

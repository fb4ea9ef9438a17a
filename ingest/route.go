package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ragpipe/ragpipe/pipeline"
)

// maxReroutes bounds how many times one batch follows a route that changed
// during its writes; a route still changing after that fails the batch's
// events, to be retried.
const maxReroutes = 3

// dest is a store collection one batch of a collection is written to, and
// how its points are made.
type dest struct {
	coll     pipeline.Collection // the store collection
	name     string              // the ragpipe collection: it seals the texts and names the metrics
	embedder Embedder
	chunker  *pipeline.Chunker
	identity string // the embedder's Identity; "" when it has none
	reuse    string // the store collection whose stored vectors are reused
	target   bool   // a Target, ensured by ensure; else the collection by its own name
	keywords bool   // the store collection stores keyword vectors: its points get them (see Describer)
	primary  bool   // the batch's serving dest: the one whose reuse and store metrics are recorded
}

// identityOf returns e's Identity, "" when it has none.
func identityOf(e Embedder) string {
	if id, ok := e.(Identified); ok {
		return id.Identity()
	}
	return ""
}

// dests returns the dests of collection name's targets; without targets,
// the collection by its own name, ensured by collection.
func (s *Stage) dests(ctx context.Context, name string, targets []Target) ([]*dest, error) {
	if len(targets) == 0 {
		c, err := s.collection(ctx, name)
		if err != nil {
			return nil, err
		}
		e := s.embedder(name)
		return []*dest{{coll: c, name: name, embedder: e, chunker: s.cfg.Chunker, identity: identityOf(e), reuse: name,
			keywords: c.Keywords, primary: true}}, nil
	}
	ds := make([]*dest, len(targets))
	for i, t := range targets {
		if t.Embedder == nil || t.Chunker == nil {
			return nil, routeError(fmt.Errorf("store collection %q of collection %q has no embedder or no chunker", t.Collection.Name, name))
		}
		ds[i] = &dest{coll: t.Collection, name: name, embedder: t.Embedder, chunker: t.Chunker, identity: identityOf(t.Embedder),
			reuse: cmp.Or(t.ReuseFrom, t.Collection.Name), target: true, primary: i == 0}
	}
	return ds, nil
}

// ensure makes sure the store collection of target d exists with its
// dimensions, once per collection, and sets d.keywords from its
// description; it never creates it (a reindex does). Its failure is never
// permanent: a route naming a missing collection is one that changes (a
// generation dropped or not yet seen), or a misconfiguration.
func (s *Stage) ensure(ctx context.Context, d *dest) error {
	if !d.target {
		return nil
	}
	if kw, ok := s.targets.Load(d.coll); ok {
		d.keywords = kw.(bool)
		return nil
	}
	if err := s.cfg.Sink.EnsureCollection(ctx, d.coll, false); err != nil {
		return fmt.Errorf("store collection %q: %w", d.coll.Name, unmarked{err})
	}
	kw, known := s.keywords(ctx, d.coll.Name)
	if known {
		s.targets.Store(d.coll, kw)
	}
	d.keywords = kw
	return nil
}

// keywords reports whether store collection name stores keyword vectors,
// as the Sink describes it (Describer), and whether that is known: a Sink
// that cannot describe it yet is taken to store them, so that no point
// misses its keyword vector, and is asked again.
func (s *Stage) keywords(ctx context.Context, name string) (keywords, known bool) {
	d, ok := s.cfg.Sink.(Describer)
	if !ok {
		return true, true
	}
	c, err := d.Describe(ctx, name)
	if err != nil {
		return true, false
	}
	return c.Keywords, true
}

// gone handles err, a write to d's store collection that found it missing:
// the collection is ensured again by the next batch, and for a target the
// error is not permanent (see ensure).
func (s *Stage) gone(d *dest, err error) error {
	switch {
	case d.target:
		s.targets.Delete(d.coll)
		return fmt.Errorf("store collection %q: %w", d.coll.Name, unmarked{err})
	case !pipeline.IsPermanent(err):
		s.known.Delete(d.name)
	}
	return err
}

// unmarked is an error without its permanence (pipeline.ErrPermanent),
// but for which errors.Is holds otherwise as for the error itself.
type unmarked struct{ err error }

func (e unmarked) Error() string { return e.err.Error() }

func (e unmarked) Is(target error) bool {
	return target != pipeline.ErrPermanent && errors.Is(e.err, target)
}

// routeError is why a collection's targets cannot be had (Route.Err): a
// misconfiguration, never permanent, so that the events are retried until
// it is fixed.
func routeError(err error) error {
	if pipeline.IsMisconfigured(err) && !pipeline.IsPermanent(err) {
		return err
	}
	return pipeline.Misconfigured(unmarked{err})
}

// generationsOf names, for Ready, the route of collection.
func generationsOf(collection string) part {
	return part{what: "generations", of: "collection", name: collection}
}

// embedderHealth records the outcome of a use of d's embedder (see
// Stage.health).
func (s *Stage) embedderHealth(d *dest, err error) {
	p := embedderOf(d.coll.Name)
	if d.target {
		p.generationOf = d.name
	}
	s.health(p, err)
}

// retire forgets the misconfigured embedders of targets of collection
// name that route no longer has (a generation abandoned or dropped), so
// that Ready does not report them for ever.
func (s *Stage) retire(name string, route Route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.misconfigured {
		if p.generationOf == name && !slices.ContainsFunc(route.Targets, func(t Target) bool { return t.Collection.Name == p.name }) {
			delete(s.misconfigured, p)
			s.cfg.Logger.Info().Str("collection", name).Str("generation", p.name).Msg("generation no longer written: its embedder is no longer checked")
		}
	}
}

// writeRouted writes the held events at idx to every dest, in parallel.
// With confirm, it then confirms the route and writes the events to the
// store collections that the confirmed route adds, until a confirmation
// finds no store collection unwritten (at most maxReroutes times): every
// change of the route made before it began is then seen, and its
// collections written. It returns one error per event (see outcome) and
// whether the event left points in any store collection.
func (s *Stage) writeRouted(ctx context.Context, name string, route Route, dests []*dest, fan *fanOut,
	keys tenantKeySet, events []pipeline.Event, idx []int, first []bool, confirm bool) ([]error, []bool) {
	done := make(map[string][]error, len(dests)) // by store collection: one error per event
	var order []string                           // the keys of done, as written
	var confirmErr error
	for round := 0; ; round++ {
		var todo []*dest
		for _, d := range dests {
			if _, ok := done[d.coll.Name]; !ok {
				done[d.coll.Name] = nil
				todo = append(todo, d)
			}
		}
		results := make([][]error, len(todo))
		var wg sync.WaitGroup
		for n, d := range todo {
			wg.Go(func() { results[n] = s.store(ctx, d, keys, events, idx, first) })
		}
		wg.Wait()
		for n, d := range todo {
			done[d.coll.Name] = results[n]
			order = append(order, d.coll.Name)
		}
		fan.add(todo)
		if !confirm {
			break
		}
		next, err := s.cfg.Router.Confirm(ctx, name)
		if err == nil && next.Err != nil {
			err = routeError(next.Err)
			s.health(generationsOf(name), err)
		}
		if err != nil {
			confirmErr = fmt.Errorf("confirm the generations of collection %q: %w", name, err)
			break
		}
		changed := next.Revision != route.Revision
		if route = next; !changed || written(route, name, done) {
			break
		}
		if round == maxReroutes {
			confirmErr = fmt.Errorf("the generations of collection %q changed %d times while its events were written", name, round+1)
			break
		}
		if dests, err = s.dests(ctx, name, route.Targets); err != nil {
			confirmErr = err
			break
		}
		for _, d := range dests {
			d.primary = false // the batch's metrics are those of its first round
		}
	}
	return s.outcome(name, route, done, order, confirmErr, len(idx))
}

// written reports whether every store collection of route, for the
// collection name, is a key of done.
func written(route Route, name string, done map[string][]error) bool {
	if len(route.Targets) == 0 {
		_, ok := done[name]
		return ok
	}
	for _, t := range route.Targets {
		if _, ok := done[t.Collection.Name]; !ok {
			return false
		}
	}
	return true
}

// outcome combines each event's errors in the store collections written
// (done, keys in order) under route, the last one seen. An error in a
// collection route no longer names does not count (a generation dropped or
// abandoned meanwhile); nor does a permanent one in any but the serving
// collection, which is logged: its embedder refused a text the serving
// generation took, and the event must not be dead-lettered for it. Of the
// others, a transient error wins over a permanent one, and confirmErr over
// them all but transient ones. stored says whether the event left points in
// some collection.
func (s *Stage) outcome(name string, route Route, done map[string][]error, order []string, confirmErr error, n int) ([]error, []bool) {
	serving, named := name, func(c string) bool { return c == name }
	if len(route.Targets) > 0 {
		serving = route.Targets[0].Collection.Name
		named = func(c string) bool {
			return slices.ContainsFunc(route.Targets, func(t Target) bool { return t.Collection.Name == c })
		}
	}
	errs, stored := make([]error, n), make([]bool, n)
	for _, c := range order {
		refused, firstRefused := 0, error(nil)
		for k, err := range done[c] {
			switch {
			case err == nil:
				stored[k] = true
			case !named(c):
			case c == serving || !pipeline.IsPermanent(err):
				if errs[k] == nil || pipeline.IsPermanent(errs[k]) && !pipeline.IsPermanent(err) {
					errs[k] = err
				}
			default:
				if refused++; firstRefused == nil {
					firstRefused = err
				}
			}
		}
		if refused > 0 {
			s.cfg.Logger.Warn().Err(firstRefused).Str("collection", name).Str("generation", c).Int("events", refused).
				Msg("events refused for good in a generation that does not serve the collection: they are stored without it there")
		}
	}
	if confirmErr != nil {
		for k := range errs {
			if errs[k] == nil || pipeline.IsPermanent(errs[k]) {
				errs[k] = confirmErr
			}
		}
	}
	return errs, stored
}

// fanOut is the Pruner of one routed batch: a claim covers its document in
// every store collection of the route, so the prunes of Settle go to each
// collection the batch was written to, or would have been.
type fanOut struct {
	sink        Sink
	collections []string
}

// add adds the store collections of dests.
func (f *fanOut) add(dests []*dest) {
	for _, d := range dests {
		if !slices.Contains(f.collections, d.coll.Name) {
			f.collections = append(f.collections, d.coll.Name)
		}
	}
}

// Prune prunes docs in each store collection of f (collection, the
// ragpipe name, is theirs). A collection that is missing has nothing to
// prune. A transient failure fails every document; permanent ones fail
// theirs.
func (f *fanOut) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	var errs []error
	for _, c := range f.collections {
		err := f.sink.Prune(ctx, c, docs)
		if err == nil {
			continue
		}
		for i, err := range pipeline.ItemErrors(err, len(docs)) {
			switch {
			case err == nil || errors.Is(err, pipeline.ErrUnknownCollection):
			case !pipeline.IsPermanent(err):
				return fmt.Errorf("store collection %q: %w", c, err)
			default:
				if errs == nil {
					errs = make([]error, len(docs))
				}
				if errs[i] == nil {
					errs[i] = fmt.Errorf("store collection %q: %w", c, err)
				}
			}
		}
	}
	if errs == nil {
		return nil
	}
	return &pipeline.BatchError{Op: "prune", Collection: strings.Join(f.collections, ", ") + " of " + collection, Errs: errs}
}

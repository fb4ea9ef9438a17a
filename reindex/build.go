package reindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// build carries a Build from the phase st records: the building generation
// created, Serving's documents copied into it, checked, and switched to.
func (j *run) build(ctx context.Context, st generation.State) error {
	var err error
	if st.Serving.Name == "" {
		if st, err = j.adopt(ctx, st); err != nil {
			return err
		}
	}
	switch st.Job.Phase {
	case generation.Waiting, generation.Creating:
		if st, err = j.create(ctx, st); err != nil {
			return err
		}
		fallthrough
	case generation.Copying:
		c, err := j.copier(ctx, st)
		if err != nil {
			return err
		}
		if st, err = c.copyAll(ctx, st); err != nil {
			return err
		}
		return j.checked(ctx, c, st)
	case generation.Checking:
		c, err := j.copier(ctx, st)
		if err != nil {
			return err
		}
		return j.checked(ctx, c, st)
	case generation.Switching:
		return j.switchTo(ctx, st, nil)
	}
	return pipeline.Permanent(fmt.Errorf("a build in phase %q", st.Job.Phase))
}

// checked checks the building generation and switches to it, or with
// Job.NoSwitch leaves it Ready, its Report in the Job.
func (j *run) checked(ctx context.Context, c *copier, st generation.State) error {
	report, err := c.check(ctx, st)
	if err != nil {
		return err
	}
	if !st.Job.NoSwitch {
		return j.switchTo(ctx, st, report)
	}
	if _, err := j.phase(ctx, generation.Ready, func(s *generation.State) error {
		s.Job.Report = report
		return nil
	}); err != nil {
		return err
	}
	j.log.Info().Str("building", st.Building.Name).Msg("built and checked, not switched: ready for a switch job")
	return nil
}

// switchBuilt carries a Switch from the phase st records: the building
// generation a Build left Ready checked again (workers kept writing it),
// then switched to.
func (j *run) switchBuilt(ctx context.Context, st generation.State) error {
	if st.Job.Phase == generation.Switching {
		return j.switchTo(ctx, st, nil)
	}
	st, err := j.phase(ctx, generation.Checking, func(*generation.State) error { return nil })
	if err != nil {
		return err
	}
	c, err := j.copier(ctx, st)
	if err != nil {
		return err
	}
	report, err := c.check(ctx, st)
	if err != nil {
		return err
	}
	return j.switchTo(ctx, st, report)
}

// adopt gives a collection without generations its serving generation: the
// store collection its name leads to (an alias' target, or a collection
// created before generations), with the process's embedder and chunking.
func (j *run) adopt(ctx context.Context, st generation.State) (generation.State, error) {
	var name string
	var desc pipeline.Collection
	err := j.retry(ctx, "read the serving collection", func(ctx context.Context) error {
		target, err := j.cfg.Store.AliasTarget(ctx, j.collection)
		if err != nil {
			return err
		}
		name = j.collection
		if target != "" {
			name = target
		}
		desc, err = j.cfg.Store.Describe(ctx, name)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			return pipeline.Permanent(fmt.Errorf("collection %q does not exist", j.collection))
		}
		return err
	})
	if err != nil {
		return st, err
	}
	d := j.cfg.Defaults(j.collection)
	serving := generation.Generation{
		Name: name, Embedder: d.Embedder, Dims: desc.Dims, Distance: desc.Distance,
		ChunkSize: d.ChunkSize, ChunkOverlap: d.ChunkOverlap,
		Shards: desc.Shards, ReplicationFactor: desc.ReplicationFactor,
	}
	if c, n, ok := generation.Parse(name); ok && c == j.collection {
		serving.Number = n
	}
	if err := serving.Check(); err != nil {
		return st, pipeline.Permanent(fmt.Errorf("serving collection %s: %w", name, err))
	}
	st, err = j.checkpoint(ctx, func(s *generation.State) error {
		if s.Serving.Name == "" {
			s.Collection, s.Serving = j.collection, serving
		}
		return nil
	})
	if err == nil {
		j.log.Info().Str("serving", st.Serving.Name).Int("number", st.Serving.Number).Str("embedder", st.Serving.Embedder).
			Int("dims", st.Serving.Dims).Msg("collection adopted: its serving generation is in the State")
	}
	return st, err
}

// create settles the building generation's settings and name, creates it in
// the store and puts it in the State as Building: from then on, every event
// is written to it too.
func (j *run) create(ctx context.Context, st generation.State) (generation.State, error) {
	job := st.Job
	switch {
	case job.Target == nil:
		return st, pipeline.Permanent(errors.New("a build without target settings"))
	case st.Previous != nil:
		return st, pipeline.Permanent(fmt.Errorf("the previous generation %s is kept for a rollback: drop it first (--drop-previous) or roll back (--rollback)", st.Previous.Name))
	case st.Building != nil && st.Building.Name != job.Target.Name:
		return st, pipeline.Permanent(fmt.Errorf("generation %s is left from another build: --abort it first", st.Building.Name))
	}
	target := generation.Fill(*job.Target, job.Given, st.Serving)
	target.Name, target.Number = job.Target.Name, job.Target.Number
	if target.Dims == 0 {
		return st, pipeline.Permanent(fmt.Errorf("the new embedder %q needs its dimensions (--dims): the serving generation's embedder is %q", target.Embedder, st.Serving.Embedder))
	}
	check := target
	check.Name = generation.Name(j.collection, max(1, target.Number)) // chosen below
	if err := check.Check(); err != nil {
		return st, pipeline.Permanent(fmt.Errorf("target settings: %w", err))
	}
	if generation.SameSettings(target, st.Serving) {
		var desc pipeline.Collection
		err := j.retry(ctx, "describe the serving collection", func(ctx context.Context) (err error) {
			desc, err = j.cfg.Store.Describe(ctx, st.Serving.Name)
			return err
		})
		if err != nil {
			return st, err
		}
		if desc.Keywords == !j.cfg.NoKeywords {
			return st, pipeline.Permanent(nothingToChange(desc.Keywords))
		}
	}
	var err error
	if target.Name == "" {
		if target.Number, err = j.nextNumber(ctx, st); err != nil {
			return st, err
		}
		target.Name = generation.Name(j.collection, target.Number)
		if st, err = j.phase(ctx, generation.Creating, func(s *generation.State) error {
			s.Job.Target = &target
			return nil
		}); err != nil {
			return st, err
		}
	}
	if err := j.retry(ctx, "create "+target.Name, func(ctx context.Context) error {
		return j.cfg.Store.CreateGeneration(ctx, target.Collection())
	}); err != nil {
		return st, err
	}
	var total int64
	if err := j.retry(ctx, "count the serving generation", func(ctx context.Context) error {
		counts, err := j.cfg.Store.Count(ctx, st.Serving.Name)
		total = 0
		for _, n := range counts {
			total += int64(n)
		}
		return err
	}); err != nil {
		return st, err
	}
	st, err = j.phase(ctx, generation.Copying, func(s *generation.State) error {
		b := target
		s.Building, s.Job.Target, s.Job.Total = &b, &target, total
		return nil
	})
	if err == nil {
		j.log.Info().Str("serving", st.Serving.Name).Str("building", target.Name).Str("embedder", target.Embedder).
			Int("dims", target.Dims).Int("chunk_size", target.ChunkSize).Int("chunk_overlap", target.ChunkOverlap).
			Int64("points", total).Msg("building generation created: events are written to it too; copying")
	}
	return st, err
}

// nothingToChange is the error of a build whose target settings are the
// serving generation's, which has keyword vectors (or none) as the store
// creates them.
func nothingToChange(keywords bool) error {
	if keywords {
		return errors.New("nothing to change: the target settings are the serving generation's, and it has keyword vectors as the workers create them (RAGPIPE_KEYWORDS=true)")
	}
	return errors.New("nothing to change: the target settings are the serving generation's, and it has no keyword vectors, as the workers create none (RAGPIPE_KEYWORDS=false)")
}

// nextNumber returns the number of the building generation: past every
// generation the State knows, skipping names a store collection has.
func (j *run) nextNumber(ctx context.Context, st generation.State) (int, error) {
	n := st.Serving.Number
	for _, g := range st.Targets() {
		n = max(n, g.Number)
	}
	for n++; ; n++ {
		name := generation.Name(j.collection, n)
		exists := false
		err := j.retry(ctx, "look for "+name, func(ctx context.Context) error {
			_, err := j.cfg.Store.Describe(ctx, name)
			exists = err == nil
			if errors.Is(err, pipeline.ErrUnknownCollection) {
				return nil
			}
			return err
		})
		if err != nil {
			return 0, err
		}
		if !exists {
			return n, nil
		}
		j.log.Warn().Str("name", name).Msg("a store collection has the next generation's name: skipping it")
	}
}

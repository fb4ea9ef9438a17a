package reindex

import (
	"context"
	"errors"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The phase Switching means, for every action, that the State has its new
// generations and the store is to follow: the alias switched, a generation
// dropped. A runner resuming a Job in that phase only does the store's part.

// switchTo makes the checked building generation serve: one State update
// (Serving becomes Previous, Building becomes Serving), then the alias.
func (j *run) switchTo(ctx context.Context, st generation.State, report *generation.Report) error {
	var start time.Time
	if st.Job.Phase != generation.Switching {
		var err error
		st, err = j.phase(ctx, generation.Switching, func(s *generation.State) error {
			if s.Building == nil || s.Job.Target == nil || s.Building.Name != s.Job.Target.Name {
				return pipeline.Permanent(errors.New("the building generation left the State before the switch"))
			}
			prev := s.Serving
			s.Serving, s.Previous, s.Building = *s.Building, &prev, nil
			s.Job.Report = report
			return nil
		})
		if err != nil {
			return err
		}
		start = time.Now()
		j.log.Info().Str("serving", st.Serving.Name).Str("previous", st.Previous.Name).Msg("switched: the new generation serves")
	}
	if err := j.switchAlias(ctx, st.Serving.Name); err != nil {
		return err
	}
	took := time.Duration(0)
	if !start.IsZero() {
		took = time.Since(start)
	}
	_, err := j.phase(ctx, generation.Done, func(s *generation.State) error {
		if s.Job.Report != nil && took > 0 {
			s.Job.Report.SwitchTook = took
		}
		return nil
	})
	if err == nil {
		j.log.Info().Dur("switch_took", took).Msg("reindex done")
	}
	return err
}

// rollback swaps Serving and Previous, then switches the alias.
func (j *run) rollback(ctx context.Context, st generation.State) error {
	if st.Job.Phase != generation.Switching {
		var err error
		st, err = j.phase(ctx, generation.Switching, func(s *generation.State) error {
			if s.Previous == nil {
				return pipeline.Permanent(errors.New("no previous generation to roll back to"))
			}
			s.Serving, *s.Previous = *s.Previous, s.Serving
			return nil
		})
		if err != nil {
			return err
		}
		j.log.Info().Str("serving", st.Serving.Name).Str("previous", st.Previous.Name).Msg("rolled back: the previous generation serves again")
	}
	if err := j.switchAlias(ctx, st.Serving.Name); err != nil {
		return err
	}
	_, err := j.phase(ctx, generation.Done, func(*generation.State) error { return nil })
	return err
}

// dropPrevious takes Previous out of the State (workers stop writing it),
// then deletes it; an adopted collection's name becomes the alias of the
// serving generation once the collection that had it is gone.
func (j *run) dropPrevious(ctx context.Context, st generation.State) error {
	return j.drop(ctx, st, "previous", func(s *generation.State) *generation.Generation {
		g := s.Previous
		s.Previous = nil
		return g
	})
}

// abort takes Building out of the State, then deletes it. A Build replaced
// before it put Building in the State names the collection it may have
// created in the Job's Target.
func (j *run) abort(ctx context.Context, st generation.State) error {
	return j.drop(ctx, st, "building", func(s *generation.State) *generation.Generation {
		g := s.Building
		s.Building = nil
		if g == nil && s.Job.Target != nil && s.Job.Target.Name != "" {
			g = s.Job.Target
		}
		return g
	})
}

// drop removes the generation take takes out of the State, recording it in
// the Job's Target, then deletes it from the store.
func (j *run) drop(ctx context.Context, st generation.State, which string, take func(s *generation.State) *generation.Generation) error {
	if st.Job.Phase != generation.Switching {
		var err error
		st, err = j.phase(ctx, generation.Switching, func(s *generation.State) error {
			g := take(s)
			if g == nil {
				return pipeline.Permanent(errors.New("no " + which + " generation to drop"))
			}
			dropped := *g
			s.Job.Target = &dropped
			return nil
		})
		if err != nil {
			return err
		}
	}
	g := st.Job.Target
	if err := j.retry(ctx, "drop "+g.Name, func(ctx context.Context) error {
		return j.cfg.Store.DropCollection(ctx, g.Name)
	}); err != nil {
		return err
	}
	j.log.Info().Str("dropped", g.Name).Msg("the " + which + " generation is dropped")
	if g.Name == j.collection {
		if err := j.switchAlias(ctx, st.Serving.Name); err != nil {
			return err
		}
	}
	_, err := j.phase(ctx, generation.Done, func(*generation.State) error { return nil })
	return err
}

package reindex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/retry"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Runner carries out the Jobs of the States, one at a time: it takes a Job
// no runner holds (or whose holder's heartbeat is older than the lease) and
// works on it until it is done, failed, taken by another runner or ctx ends.
// Every step is recorded in the State, so that any runner resumes where a
// killed one stopped.
type Runner struct {
	cfg Config
	log zerolog.Logger
}

// NewRunner validates cfg and returns a Runner.
func NewRunner(cfg Config) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With().Str("component", "reindex").Str("owner", cfg.Owner).Logger()}, nil
}

// Run looks at the States every Config.Poll and carries out the Jobs it
// can take until ctx ends; it then releases the Job it holds, so that
// another runner takes it at once, and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		for _, s := range r.cfg.Registry.All() {
			if ctx.Err() != nil {
				return nil
			}
			if r.takeable(s.Job, time.Now()) {
				r.carry(ctx, s.Collection, s.Job.ID)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// takeable reports whether j is to be carried out and no live runner holds it.
func (r *Runner) takeable(j *generation.Job, now time.Time) bool {
	return j.Active() && (j.Owner == "" || j.Owner == r.cfg.Owner || now.Sub(j.Heartbeat) > r.cfg.Lease)
}

// errLost stops the work on a Job another runner took, or that a newer Job
// replaced.
var errLost = errors.New("the job was taken by another runner or replaced")

// run is one Runner's work on one Job.
type run struct {
	*Runner
	collection, id string
	log            zerolog.Logger

	mu      sync.Mutex
	problem error // the failure being retried, shown in Job.Error meanwhile
}

// carry takes the Job id of collection and works on it.
func (r *Runner) carry(ctx context.Context, collection, id string) {
	j := &run{Runner: r, collection: collection, id: id,
		log: r.log.With().Str("collection", collection).Str("job", id).Logger()}
	st, err := r.cfg.Registry.Update(ctx, collection, func(s *generation.State, _ bool) error {
		if s.Job == nil || s.Job.ID != id || !r.takeable(s.Job, time.Now()) {
			return errLost
		}
		if s.Job.Owner != "" && s.Job.Owner != r.cfg.Owner {
			j.log.Warn().Str("previous_owner", s.Job.Owner).Time("heartbeat", s.Job.Heartbeat).
				Msg("taking over a job whose runner stopped renewing its lease")
		}
		s.Job.Owner, s.Job.Heartbeat = r.cfg.Owner, time.Now()
		if s.Job.Started.IsZero() {
			s.Job.Started = s.Job.Heartbeat
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errLost) {
			j.log.Warn().Err(err).Msg("cannot take the job")
		}
		return
	}
	j.log.Info().Str("action", string(st.Job.Action)).Str("phase", string(st.Job.Phase)).Msg("job taken")

	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { j.heartbeat(jctx, cancel) })
	err = j.work(jctx, st)
	cancel(nil)
	wg.Wait()
	switch {
	case ctx.Err() != nil && err != nil:
		j.release()
	case errors.Is(context.Cause(jctx), errLost) || errors.Is(err, errLost):
		j.log.Warn().Msg("stopped: " + errLost.Error())
	case pipeline.IsPermanent(err):
		j.fail(ctx, err)
	case err != nil:
		// The store and the embedders' failures are retried where they
		// happen; this is the State's bucket: the Job is left to the next
		// poll, of this runner or another.
		j.log.Warn().Err(err).Msg("job interrupted; it is taken again")
		j.release()
	}
}

// work carries out the Job's action from the phase st records.
func (j *run) work(ctx context.Context, st generation.State) error {
	switch st.Job.Action {
	case generation.Build:
		return j.build(ctx, st)
	case generation.Rollback:
		return j.rollback(ctx, st)
	case generation.DropPrevious:
		return j.dropPrevious(ctx, st)
	case generation.Abort:
		return j.abort(ctx, st)
	case generation.Switch:
		return j.switchBuilt(ctx, st)
	}
	return pipeline.Permanent(fmt.Errorf("unknown action %q", st.Job.Action))
}

// heartbeat renews the Job's heartbeat every Config.Heartbeat, with the
// failure being retried as its Error, until ctx ends. It cancels ctx with
// errLost when the Job is no longer this run's, or when no renewal
// succeeded for a lease.
func (j *run) heartbeat(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(j.cfg.Heartbeat)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := j.checkpoint(ctx, func(*generation.State) error { return nil })
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, errLost):
			cancel(errLost)
			return
		case ctx.Err() == nil:
			j.log.Warn().Err(err).Msg("cannot renew the job's heartbeat")
			if time.Since(renewed) > j.cfg.Lease {
				cancel(errLost)
				return
			}
		}
	}
}

// checkpoint applies fn to the State, renewing the heartbeat, provided the
// Job is still this run's; errLost otherwise.
func (j *run) checkpoint(ctx context.Context, fn func(s *generation.State) error) (generation.State, error) {
	return j.cfg.Registry.Update(ctx, j.collection, func(s *generation.State, _ bool) error {
		if s.Job == nil || s.Job.ID != j.id || s.Job.Owner != j.cfg.Owner || !s.Job.Active() {
			return errLost
		}
		if err := fn(s); err != nil {
			return err
		}
		s.Job.Heartbeat = time.Now()
		s.Job.Error = ""
		j.mu.Lock()
		if j.problem != nil {
			s.Job.Error = "retrying: " + j.problem.Error()
		}
		j.mu.Unlock()
		return nil
	})
}

// phase moves the Job to phase p, with fn's other changes.
func (j *run) phase(ctx context.Context, p generation.Phase, fn func(s *generation.State) error) (generation.State, error) {
	return j.checkpoint(ctx, func(s *generation.State) error {
		if err := fn(s); err != nil {
			return err
		}
		s.Job.Phase = p
		if p == generation.Done || p == generation.Ready {
			s.Job.Finished = time.Now()
			s.Job.Owner = ""
		}
		return nil
	})
}

// fail records why the Job failed.
func (j *run) fail(ctx context.Context, cause error) {
	j.log.Error().Err(cause).Msg("job failed")
	_, err := j.cfg.Registry.Update(ctx, j.collection, func(s *generation.State, _ bool) error {
		if s.Job == nil || s.Job.ID != j.id || s.Job.Owner != j.cfg.Owner {
			return generation.ErrNoChange
		}
		s.Job.Phase, s.Job.Finished, s.Job.Owner = generation.Failed, time.Now(), ""
		s.Job.Error = cause.Error()
		return nil
	})
	if err != nil {
		j.log.Warn().Err(err).Msg("cannot record the job's failure")
	}
}

// release gives the Job up, so that another runner takes it without
// waiting for the lease.
func (j *run) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := j.cfg.Registry.Update(ctx, j.collection, func(s *generation.State, _ bool) error {
		if s.Job == nil || s.Job.ID != j.id || s.Job.Owner != j.cfg.Owner {
			return generation.ErrNoChange
		}
		s.Job.Owner = ""
		return nil
	})
	if err != nil {
		j.log.Warn().Err(err).Msg("cannot release the job; another runner takes it once its lease ends")
		return
	}
	j.log.Info().Msg("stopping: job released to the other runners")
}

// retry calls op until it succeeds, fails permanently or ctx ends; the
// failures retried are logged and shown in the Job's Error meanwhile.
func (j *run) retry(ctx context.Context, what string, op func(ctx context.Context) error) error {
	p := retry.Policy{
		ShouldRetry: func(err error) bool { return !pipeline.IsPermanent(err) && !errors.Is(err, errLost) },
		OnRetry: func(attempt int, err error, wait time.Duration) {
			j.setProblem(fmt.Errorf("%s: %w", what, err))
			j.log.Warn().Err(err).Int("attempt", attempt).Dur("wait", wait).Msg(what + " failed; retrying")
		},
	}
	err := p.Do(ctx, op)
	j.setProblem(nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (j *run) setProblem(err error) {
	j.mu.Lock()
	j.problem = err
	j.mu.Unlock()
}

// switchAlias points the ragpipe name at the serving generation; a plain
// collection of that name (adopted, generation 0) keeps the name until it
// is dropped.
func (j *run) switchAlias(ctx context.Context, serving string) error {
	if serving == j.collection {
		return nil
	}
	taken := false
	err := j.retry(ctx, "switch the alias", func(ctx context.Context) error {
		err := j.cfg.Store.SwitchAlias(ctx, j.collection, serving)
		if errors.Is(err, pipeline.ErrNameTaken) {
			taken = true
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case taken:
		j.log.Info().Str("serving", serving).
			Msg("alias not switched: the collection created before generations still has the name; --drop-previous creates the alias once it is dropped")
	default:
		j.log.Info().Str("alias", j.collection).Str("serving", serving).Msg("alias switched")
	}
	return nil
}

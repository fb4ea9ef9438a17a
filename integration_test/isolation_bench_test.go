package integration_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// BenchmarkNoisyNeighbour measures what a collection whose embedding service
// is down costs the other tenants, with one `ragpipe worker` process, the
// hash embedder for the healthy collection and an OpenAI-compatible service
// answering 503 for the failing ones (the embedder's default retry time, 60s
// per request). It reports the rate at which 2,000 healthy events are stored:
//
//   - alone;
//   - while 3,000 events of a failing collection are parked (the worker
//     has met them and set them apart);
//   - at onset: published just after 3,000 events of another failing
//     collection that the worker has not met yet, which fill the shared
//     consumer's delivery budget (1,280) first.
//
// Run it with:
//
//	go test -run '^$' -bench NoisyNeighbour -benchtime 1x ./integration_test
func BenchmarkNoisyNeighbour(b *testing.B) {
	for range b.N {
		benchNoisyNeighbour(b)
	}
}

func benchNoisyNeighbour(b *testing.B) {
	b.StopTimer()
	const dims, n, failing = 64, 2000, 3000
	down := startFlaky(b, dims)
	s := newSystem(b, "RAGPIPE_EMBEDDER=hash", fmt.Sprintf("RAGPIPE_COLLECTIONS=docs:%d:cosine,broken:%[1]d:cosine:DOWN,later:%[1]d:cosine:DOWN", dims),
		"RAGPIPE_EMBEDDER_DOWN_KIND=openai", "RAGPIPE_EMBEDDER_DOWN_URL="+down.URL+"/v1", "RAGPIPE_EMBEDDER_DOWN_MODEL=text-embedding-3-small")
	s.startWorker() // its start probes the service, which answers
	down.mode.Store(unavailable)
	r := rand.New(rand.NewPCG(8, 8))
	batch := func(collection, prefix string, count int) []event {
		events := make([]event, count)
		for i := range events {
			events[i] = event{user: users[i%len(users)], collection: collection,
				body: map[string]any{"doc_id": fmt.Sprint(prefix, i), "text": text(r, 600)}}
		}
		return events
	}
	stored := uint64(0)
	// healthy publishes n new healthy events and returns how long they took
	// to be stored, from the first publish.
	healthy := func(round string) time.Duration {
		start := time.Now()
		s.publish(batch("docs", round+"-", n))
		stored += n
		checkfor.Until(b, 10*time.Minute, "healthy events stored", func() error {
			got, err := s.count("docs")
			if err != nil {
				return err
			}
			if got < stored {
				return fmt.Errorf("%d of %d stored", got, stored)
			}
			return nil
		})
		return time.Since(start)
	}
	b.StartTimer()
	alone := healthy("alone")

	s.publish(batch("broken", "b-", failing))
	start := time.Now()
	checkfor.Until(b, 10*time.Minute, "the failing events parked", func() error {
		info, err := s.consumerInfo()
		if err != nil {
			return err
		}
		parked, err := s.parked()
		if err != nil {
			return err
		}
		if info.NumPending+uint64(info.NumAckPending) > 0 || parked < failing {
			return fmt.Errorf("%d in the shared consumer, %d parked", info.NumPending+uint64(info.NumAckPending), parked)
		}
		return nil
	})
	setApart := time.Since(start)
	noisy := healthy("noisy")

	s.publish(batch("later", "l-", failing))
	onset := healthy("onset")
	b.StopTimer()

	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.ReportMetric(rate(alone), "alone-docs/s")
	b.ReportMetric(rate(noisy), "noisy-docs/s")
	b.ReportMetric(rate(noisy)/rate(alone), "noisy/alone")
	b.ReportMetric(rate(onset), "onset-docs/s")
	b.ReportMetric(setApart.Seconds(), "set-apart-s")
	b.Logf("%d healthy events: alone %v (%.0f/s); while %d failing events are parked %v (%.0f/s, %.2f of alone); "+
		"just after %d failing events of a new collection %v (%.0f/s, %.2f of alone); the first %d were set apart in %v",
		n, alone.Round(time.Millisecond), rate(alone), failing, noisy.Round(time.Millisecond), rate(noisy), rate(noisy)/rate(alone),
		failing, onset.Round(time.Millisecond), rate(onset), rate(onset)/rate(alone), failing, setApart.Round(time.Millisecond))
}

package telemetry

import "time"

// The methods below record the ingest stage's work (ingest.Metrics). The
// stage calls them only for collections it has ensured exist, so each admits
// its collection to the bounded collection label (AdmitCollection).

// ObserveEmbed counts the texts of one embedder call of collection and, when
// the call succeeded, times it.
func (m *Metrics) ObserveEmbed(collection string, texts int, took time.Duration, err error) {
	m.AdmitCollection(collection)
	m.ChunksEmbedded.WithLabelValues(collection).Add(float64(texts))
	if err == nil {
		m.EmbedSeconds.WithLabelValues(collection).Observe(took.Seconds())
	}
}

// ObserveReuse counts chunks of collection that reused a stored vector.
func (m *Metrics) ObserveReuse(collection string, chunks int) {
	m.AdmitCollection(collection)
	m.ChunksReused.WithLabelValues(collection).Add(float64(chunks))
}

// ObserveStore times one store write of collection that succeeded; a failed
// one is not timed.
func (m *Metrics) ObserveStore(collection string, took time.Duration, err error) {
	m.AdmitCollection(collection)
	if err == nil {
		m.UpsertSeconds.WithLabelValues(collection).Observe(took.Seconds())
	}
}

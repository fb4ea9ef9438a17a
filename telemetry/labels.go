package telemetry

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the collection label that name no collection (collection names
// start with a letter, so none can collide with them).
const (
	// OtherCollection counts every collection beyond the bound that
	// LimitCollections sets.
	OtherCollection = "_other"
	// InvalidCollection counts requests whose subject names no valid
	// collection.
	InvalidCollection = "_invalid"
)

// collectionLabels bounds the values of the collection label, so that a
// tenant naming ever new collections cannot grow the metrics without end.
// It is safe for concurrent use.
type collectionLabels struct {
	mu      sync.RWMutex
	limited bool            // false: every name is its own value
	own     map[string]bool // names with a value of their own
	admit   int             // how many more AdmitCollection may add
}

// value is the label value of collection name.
func (l *collectionLabels) value(name string) string {
	if name == OtherCollection || name == InvalidCollection {
		return name
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.limited || l.own[name] {
		return name
	}
	return OtherCollection
}

// bound returns lvs with its first value, a collection, bounded; lvs itself
// is left alone.
func (l *collectionLabels) bound(lvs []string) []string {
	if len(lvs) == 0 {
		return lvs
	}
	if v := l.value(lvs[0]); v != lvs[0] {
		lvs = slices.Clone(lvs)
		lvs[0] = v
	}
	return lvs
}

// LimitCollections bounds the collection label of every per-collection
// metric: the configured collections and up to max more, given by
// AdmitCollection, keep a value of their own; every other collection is
// counted under OtherCollection. Until it is called every collection has a
// value of its own. Calling it again starts over.
func (m *Metrics) LimitCollections(configured []string, max int) {
	l := m.collections
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limited = true
	l.own = make(map[string]bool, len(configured))
	for _, name := range configured {
		l.own[name] = true
	}
	l.admit = max
}

// AdmitCollection gives collection a label value of its own if it has none
// and the bound of LimitCollections allows one more. Callers admit only
// collections that exist (created or found in the store), so that names a
// tenant merely mentions never take a place.
func (m *Metrics) AdmitCollection(name string) {
	l := m.collections
	l.mu.RLock()
	done := !l.limited || l.own[name] || l.admit <= 0
	l.mu.RUnlock()
	if done {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.limited || l.own[name] || l.admit <= 0 || name == OtherCollection || name == InvalidCollection {
		return
	}
	l.own[name] = true
	l.admit--
}

// CounterVec is a vector of counters whose first label is a collection,
// bounded as LimitCollections says. It is safe for concurrent use.
type CounterVec struct {
	vec    *prometheus.CounterVec
	labels *collectionLabels
}

// WithLabelValues returns the counter of the label values, in the order the
// metric declares them; the collection is mapped to its bounded value.
func (v *CounterVec) WithLabelValues(lvs ...string) prometheus.Counter {
	return v.vec.WithLabelValues(v.labels.bound(lvs)...)
}

// HistogramVec is a vector of histograms whose first label is a collection,
// bounded as LimitCollections says. It is safe for concurrent use.
type HistogramVec struct {
	vec    *prometheus.HistogramVec
	labels *collectionLabels
}

// WithLabelValues returns the histogram of the label values, in the order
// the metric declares them; the collection is mapped to its bounded value.
func (v *HistogramVec) WithLabelValues(lvs ...string) prometheus.Observer {
	return v.vec.WithLabelValues(v.labels.bound(lvs)...)
}

package publish

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/pipeline"
)

// docKey names one document.
type docKey struct{ user, collection, doc string }

// target is what a document must show for the run's publishes of it to be
// searchable: its newest event of the run.
type target struct {
	version uint64
	seq     uint64 // stream sequence of the event
	op      pipeline.Op
}

// published is one acknowledged event, as a dead letter is matched to it.
type published struct {
	doc      docKey
	where    string
	subject  string
	seq      uint64 // stream sequence of the acknowledgement
	version  uint64 // effective version, as the worker decodes it
	implicit bool   // the version is the stream sequence (unique in the stream)
}

// Failure is an event of the run that will never be searchable.
type Failure struct {
	Where  string // the event's source: a file, or file:line
	DocID  string // empty when the event has none the worker could read
	Reason string // the worker's reason (header Ragpipe-Error), or the decoder's
}

// tracker records the run's acknowledged events. It is safe for concurrent use.
type tracker struct {
	mu        sync.Mutex
	targets   map[docKey]target
	events    []published
	bySeq     map[uint64][]int // stream sequence -> events
	byVersion map[verKey][]int // (subject, version) -> events
	failures  []Failure        // events the decoder refuses: sure to be dead-lettered
	failedAt  map[docKey]bool  // documents whose newest event failed
}

type verKey struct {
	subject string
	version uint64
}

func newTracker() *tracker {
	return &tracker{
		targets: map[docKey]target{}, bySeq: map[uint64][]int{},
		byVersion: map[verKey][]int{}, failedAt: map[docKey]bool{},
	}
}

// add records an acknowledged event: as the worker will decode it with
// stream sequence seq, so with the version it will get.
func (t *tracker) add(cfg pipeline.DecodeConfig, where string, msg *nats.Msg, seq uint64) {
	e, err := pipeline.Decode(cfg, msg.Subject, msg.Data, "", seq)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		// The worker decodes it the same way: the event is dead-lettered
		// with this reason.
		var r *pipeline.Rejection
		reason := err.Error()
		if errors.As(err, &r) {
			reason = r.Reason
		}
		t.failures = append(t.failures, Failure{Where: where, DocID: docIDOf(msg.Data), Reason: reason})
		return
	}
	k := docKey{e.UserID, e.Collection, e.DocID}
	if cur, ok := t.targets[k]; !ok || e.Version > cur.version {
		t.targets[k] = target{version: e.Version, seq: seq, op: e.Op}
	}
	i := len(t.events)
	t.events = append(t.events, published{doc: k, where: where, subject: msg.Subject, seq: seq, version: e.Version, implicit: e.Version == seq})
	t.bySeq[seq] = append(t.bySeq[seq], i)
	vk := verKey{msg.Subject, e.Version}
	t.byVersion[vk] = append(t.byVersion[vk], i)
}

// deadLettered records a dead letter if it is one of the run's events.
func (t *tracker) deadLettered(dl deadLetter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var match []int
	for _, i := range t.bySeq[dl.seq] {
		if dl.seq != 0 && t.events[i].subject == dl.subject {
			match = append(match, i)
		}
	}
	if len(match) == 0 && dl.version != 0 {
		// A dead letter without the event's sequence.
		for _, i := range t.byVersion[verKey{dl.subject, dl.version}] {
			if e := t.events[i]; e.implicit || e.doc.doc == dl.docID {
				match = append(match, i)
			}
		}
	}
	for _, i := range match {
		e := t.events[i]
		t.failures = append(t.failures, Failure{Where: e.where, DocID: e.doc.doc, Reason: dl.reason})
		if t.targets[e.doc].version == e.version {
			t.failedAt[e.doc] = true
		}
	}
}

// allTargets returns a copy of the run's documents and their targets; Wait
// removes those that failed with dropFailed.
func (t *tracker) allTargets() map[docKey]target {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.targets)
}

// dropFailed removes from pending the documents whose newest event failed.
func (t *tracker) dropFailed(pending map[docKey]target) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.failedAt {
		delete(pending, k)
	}
}

// report builds Wait's report of total documents, pending of them unsettled.
func (t *tracker) report(total int, pending map[docKey]target) WaitReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := WaitReport{Documents: total, Failures: slices.Clone(t.failures)}
	r.Searchable = total - len(pending) - len(t.failedAt)
	for k := range pending {
		r.Pending = append(r.Pending, k.user+"/"+k.collection+"/"+k.doc)
	}
	slices.Sort(r.Pending)
	return r
}

// docIDOf returns the doc_id of an event's body, "" if it has no readable one.
func docIDOf(body []byte) string {
	var b struct {
		DocID string `json:"doc_id"`
	}
	_ = json.Unmarshal(body, &b)
	return b.DocID
}

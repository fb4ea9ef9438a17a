package pipeline_test

import (
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// docText is about 900 characters of documentation as the worker sees it:
// prose with identifiers, a path, a version and punctuation, a typical
// document of a drain.
const docText = `The JetStream consumer delivers each message at most MaxAckPending times ` +
	`before it is acknowledged; a worker that falls behind keeps its backlog in the stream, ` +
	`not in memory. Set max_ack_pending in /etc/ragpipe/worker.conf, or RAGPIPE_MAX_ACK_PENDING ` +
	`in the environment, to bound the documents in flight.

Each document is split into chunks of at most 2000 characters, consecutive chunks ` +
	`overlapping by 200 so that a sentence straddling a boundary stays whole in one of them. ` +
	`Queries match chunks by their embeddings and, with hybrid search, by their keywords: ` +
	`the HTTPServer's handleSearch computes both vectors and asks Qdrant for the nearest ` +
	`points of the tenant's collection (user_id filter), then fuses the two rankings. ` +
	`Stale versions are pruned once the newest version's points are written; see ` +
	`docs/GENERATIONS.md for how a reindex switches collections without losing writes. ` +
	`Errors are classified once: a timeout retries with backoff, a malformed event is dead-lettered.`

// inventoryText is about 900 characters of a repetitive inventory record.
var inventoryText = strings.Repeat("m5.xlarge instance in eu-west-1, tagged env=prod, owner=platform, running since 2024-03-01. ", 10)

func BenchmarkKeywordsDoc(b *testing.B) {
	b.SetBytes(int64(len(docText)))
	b.ReportAllocs()
	done := cputimetest.Per(b, 1, "cpu-ns/op")
	for b.Loop() {
		pipeline.Keywords(docText)
	}
	done()
}

func BenchmarkQueryKeywords(b *testing.B) {
	const q = "How do I bound maxAckPending for the JetStream consumer of ragpipe workers?"
	b.SetBytes(int64(len(q)))
	b.ReportAllocs()
	done := cputimetest.Per(b, 1, "cpu-ns/op")
	for b.Loop() {
		pipeline.QueryKeywords(q)
	}
	done()
}

func BenchmarkSplitDoc(b *testing.B) {
	c, err := pipeline.NewChunker(2000, 200)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(docText)))
	b.ReportAllocs()
	for b.Loop() {
		if len(c.Split(docText)) != 1 {
			b.Fatal("want one chunk")
		}
	}
}

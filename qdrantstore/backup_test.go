package qdrantstore_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/backup"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// BenchmarkBackupQdrant backs up a collection of 10,000 documents of three
// chunks (384 dimensions, five tenants) from a quiet Qdrant node, deletes
// it and restores it, and reports both rates in points per second.
func BenchmarkBackupQdrant(b *testing.B) {
	const docs, chunks, benchDims = 10_000, 3, 384
	node := qdranttest.Start(b)
	q, err := qdrantstore.New(b.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: node.GRPCPort(), Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	coll := pipeline.Collection{Name: "bench", Dims: benchDims, Distance: pipeline.Cosine}
	fill := func() {
		if err := q.EnsureCollection(b.Context(), coll, true); err != nil {
			b.Fatal(err)
		}
		for lo := 0; lo < docs; lo += 500 {
			var ws []pipeline.DocWrite
			for i := lo; i < lo+500; i++ {
				user, doc := fmt.Sprint("tenant-", i%5), fmt.Sprint("doc-", i)
				w := pipeline.DocWrite{UserID: user, DocID: doc, Version: 1}
				for c := range chunks {
					vec := make([]float32, benchDims)
					vec[(i+c)%benchDims] = 1
					text := fmt.Sprintf("document %d chunk %d about instances, volumes and buckets", i, c)
					w.Points = append(w.Points, pipeline.Point{ID: pipeline.PointID(user, doc, c), Vector: vec,
						UserID: user, DocID: doc, ChunkIndex: c, ChunkCount: chunks, Version: 1, Text: text,
						Metadata: map[string]any{"n": int64(i)}, Keywords: pipeline.Keywords(text)})
				}
				ws = append(ws, w)
			}
			if err := q.Apply(b.Context(), coll.Name, ws); err != nil {
				b.Fatal(err)
			}
		}
	}
	fill()
	var backupTime, restoreTime time.Duration
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(b.TempDir(), "backup")
		start := time.Now()
		if _, err := backup.Backup(b.Context(), backup.Config{Source: q, Dir: dir}); err != nil {
			b.Fatal(err)
		}
		backupTime += time.Since(start)
		target, err := q.AliasTarget(b.Context(), coll.Name)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.DropCollection(b.Context(), target); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		_, err = backup.Restore(b.Context(), backup.RestoreConfig{Dir: dir, Target: q, StateFile: filepath.Join(b.TempDir(), "state")})
		restoreTime += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	points := float64(docs * chunks * b.N)
	b.ReportMetric(points/backupTime.Seconds(), "backup-points/s")
	b.ReportMetric(points/restoreTime.Seconds(), "restore-points/s")
}

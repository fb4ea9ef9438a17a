package qdranttest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

func client(t *testing.T, n *qdranttest.Node) *qdrant.Client {
	t.Helper()
	c, err := qdrant.NewClient(&qdrant.Config{Host: "127.0.0.1", Port: n.GRPCPort(), PoolSize: 1, SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls f until it succeeds or 30s pass.
func eventually(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countIs(c *qdrant.Client, coll string, want uint64) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n, err := c.Count(ctx, &qdrant.CountPoints{CollectionName: coll, Exact: qdrant.PtrOf(true)})
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("count %d, want %d", n, want)
		}
		return nil
	}
}

func TestStart(t *testing.T) {
	n := qdranttest.Start(t)
	if n.URL() != "http://"+n.GRPCAddr() || n.GRPCAddr() != fmt.Sprintf("127.0.0.1:%d", n.GRPCPort()) {
		t.Fatalf("URL %s, GRPCAddr %s", n.URL(), n.GRPCAddr())
	}
	c := client(t, n)
	ctx := t.Context()
	if err := c.CreateCollection(ctx, &qdrant.CreateCollection{
		CollectionName: "c",
		VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Dot}),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true),
		Points: []*qdrant.PointStruct{{Id: qdrant.NewIDNum(1), Vectors: qdrant.NewVectors(1, 2)}}}); err != nil {
		t.Fatal(err)
	}
	// Storage survives a kill and a restart on the same ports.
	n.Kill(t)
	n.Restart(t)
	eventually(t, "count after restart", countIs(c, "c", 1))
	n.Stop(t)
	n.Restart(t)
	eventually(t, "count after stop and restart", countIs(c, "c", 1))
}

func TestStartCluster(t *testing.T) {
	nodes := qdranttest.StartCluster(t, 3)
	ctx := t.Context()
	clients := make([]*qdrant.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = client(t, n)
	}
	if err := clients[0].CreateCollection(ctx, &qdrant.CreateCollection{
		CollectionName:    "sharded",
		VectorsConfig:     qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Cosine}),
		ShardNumber:       qdrant.PtrOf(uint32(3)),
		ReplicationFactor: qdrant.PtrOf(uint32(2)),
	}); err != nil {
		t.Fatal(err)
	}
	info, err := clients[1].GetCollectionInfo(ctx, "sharded")
	if err != nil {
		t.Fatal(err)
	}
	if p := info.GetConfig().GetParams(); p.GetShardNumber() != 3 || p.GetReplicationFactor() != 2 {
		t.Fatalf("shards %d replication %d", p.GetShardNumber(), p.GetReplicationFactor())
	}

	const points = 60
	var pts []*qdrant.PointStruct
	for i := range points {
		pts = append(pts, &qdrant.PointStruct{Id: qdrant.NewIDNum(uint64(i + 1)), Vectors: qdrant.NewVectors(float32(i+1), 1)})
	}
	eventually(t, "upsert", func(ctx context.Context) error {
		_, err := clients[1].Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "sharded", Wait: qdrant.PtrOf(true), Points: pts})
		return err
	})
	for i, c := range clients {
		eventually(t, fmt.Sprintf("count on node %d", i), countIs(c, "sharded", points))
	}

	// Every shard has a second replica, so the others still read everything.
	nodes[2].Kill(t)
	for i, c := range clients[:2] {
		eventually(t, fmt.Sprintf("count on node %d after killing node 2", i), countIs(c, "sharded", points))
	}
}

package embedder_test

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"slices"

	"github.com/ragpipe/ragpipe/embedder"
)

func ExampleHash() {
	h, err := embedder.NewHash(1024)
	if err != nil {
		log.Fatal(err)
	}
	ids := []string{"rds/prod-orders", "ec2/web-1", "runbook/disk-full", "s3/exports"}
	docs := []string{
		"PostgreSQL 16 database prod-orders runs on db.r6g.large in eu-west-1. Backups are taken nightly and kept for 14 days.",
		"The web-1 instance i-0abc123 serves the storefront from eu-central-1 behind the public load balancer.",
		"When a disk fills up, find the largest log files, rotate them and extend the volume.",
		"The exports bucket receives the nightly billing reports as CSV files.",
	}
	queries := []string{
		"how long are nightly backups of the orders database kept?",
		"disks filling up with logs",
		"which instance serves the storefront",
	}
	ctx := context.Background()
	docVecs, err := h.Embed(ctx, docs)
	if err != nil {
		log.Fatal(err)
	}
	queryVecs, err := h.Embed(ctx, queries)
	if err != nil {
		log.Fatal(err)
	}
	for i, q := range queryVecs {
		ranking := []int{0, 1, 2, 3}
		slices.SortStableFunc(ranking, func(a, b int) int {
			return cmp.Compare(cosine(q, docVecs[b]), cosine(q, docVecs[a]))
		})
		fmt.Printf("%q:\n", queries[i])
		for rank, d := range ranking {
			fmt.Printf("  %d. %s\n", rank+1, ids[d])
		}
	}
	// Output:
	// "how long are nightly backups of the orders database kept?":
	//   1. rds/prod-orders
	//   2. s3/exports
	//   3. ec2/web-1
	//   4. runbook/disk-full
	// "disks filling up with logs":
	//   1. runbook/disk-full
	//   2. s3/exports
	//   3. ec2/web-1
	//   4. rds/prod-orders
	// "which instance serves the storefront":
	//   1. ec2/web-1
	//   2. s3/exports
	//   3. runbook/disk-full
	//   4. rds/prod-orders
}

// cosine is the cosine similarity of two unit vectors: their dot product.
func cosine(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

package pipeline_test

import (
	"fmt"

	"github.com/ragpipe/ragpipe/pipeline"
)

func ExamplePointID() {
	// The same chunk of the same document always gets the same id, so a
	// redelivered event overwrites its points instead of duplicating them.
	fmt.Println(pipeline.PointID("alice", "ec2/i-0abc123", 0))
	fmt.Println(pipeline.PointID("alice", "ec2/i-0abc123", 1))
	// Output:
	// 9b89c13a-f53b-583b-b6db-d5ec94e9016d
	// 1d8c0670-1605-56a8-8d0c-34e217eaf6cb
}

func ExampleChunker_Split() {
	// Chunks of at most 80 characters overlapping by up to 30: the first
	// ends at the paragraph break, the next ones begin at a sentence.
	c, err := pipeline.NewChunker(80, 30)
	if err != nil {
		panic(err)
	}
	text := "RDS instance prod-orders runs PostgreSQL 16. It is Multi-AZ.\n\n" +
		"Backups are kept for 14 days. Snapshots are copied to eu-central-1 nightly."
	for _, chunk := range c.Split(text) {
		fmt.Printf("%q\n", chunk)
	}
	// Output:
	// "RDS instance prod-orders runs PostgreSQL 16. It is Multi-AZ."
	// "It is Multi-AZ.\n\nBackups are kept for 14 days."
	// "Backups are kept for 14 days. Snapshots are copied to eu-central-1 nightly."
}

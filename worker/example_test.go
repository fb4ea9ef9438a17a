package worker_test

import (
	"fmt"

	"github.com/ragpipe/ragpipe/worker"
)

func ExampleDeadLetters_Filter() {
	// Dead letters are stored on <prefix>.dlq.<user_id>.<collection>; an
	// empty token matches every tenant or collection. Building a filter
	// needs no connection.
	d := worker.NewDeadLetters(nil, "rag")
	fmt.Println(d.Filter("alice", "docs"))
	fmt.Println(d.Filter("alice", ""))
	fmt.Println(d.Filter("", "docs"))
	fmt.Println(d.Filter("", ""))
	// Output:
	// rag.dlq.alice.docs
	// rag.dlq.alice.*
	// rag.dlq.*.docs
	// rag.dlq.*.*
}

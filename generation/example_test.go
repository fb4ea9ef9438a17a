package generation_test

import (
	"fmt"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The store collection of a generation is named after its ragpipe
// collection and number; Parse reads the name back.
func ExampleName() {
	name := generation.Name("documents", 2)
	collection, n, ok := generation.Parse(name)
	fmt.Println(name, collection, n, ok)
	_, _, ok = generation.Parse("documents")
	fmt.Println(ok)
	// Output:
	// documents__g2 documents 2 true
	// false
}

// Every event of a collection is written to each of its State's
// generations, serving first.
func ExampleState_Targets() {
	g := func(n int) *generation.Generation {
		return &generation.Generation{Name: generation.Name("documents", n), Number: n, Dims: 256,
			Distance: pipeline.Cosine, ChunkSize: 2000, ChunkOverlap: 200}
	}
	s := generation.State{Collection: "documents", Serving: *g(2), Building: g(3), Previous: g(1)}
	for _, t := range s.Targets() {
		fmt.Println(t.Name)
	}
	// Output:
	// documents__g2
	// documents__g3
	// documents__g1
}

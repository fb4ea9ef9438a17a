package builtin_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ragpipe/ragpipe/embedder/builtin"
)

// The builtin embedder matches questions to texts by meaning: none of these
// questions shares a content word with the text it finds.
func Example() {
	e, err := builtin.New(builtin.Config{Dimensions: 1024}) // zero-padded past 512
	if err != nil {
		log.Fatal(err)
	}
	docs := []string{
		"The nightly backup of the orders database failed because the disk was full.",
		"Our AWS invoice doubled this month; finance asked every team to cut spending.",
		"The new hire starts on Monday and needs a laptop and VPN access.",
	}
	questions := []string{
		"we are paying too much for cloud",
		"storage ran out during the database dump",
		"onboarding an employee",
	}
	ctx := context.Background()
	dv, err := e.Embed(ctx, docs)
	if err != nil {
		log.Fatal(err)
	}
	qv, err := e.Embed(ctx, questions)
	if err != nil {
		log.Fatal(err)
	}
	for i, q := range qv {
		best, bestScore := 0, float32(-1)
		for j, d := range dv {
			var dot float32 // the cosine: vectors have unit length
			for k := range d {
				dot += q[k] * d[k]
			}
			if dot > bestScore {
				best, bestScore = j, dot
			}
		}
		fmt.Printf("%q -> %.40s…\n", questions[i], docs[best])
	}
	// Output:
	// "we are paying too much for cloud" -> Our AWS invoice doubled this month; fina…
	// "storage ran out during the database dump" -> The nightly backup of the orders databas…
	// "onboarding an employee" -> The new hire starts on Monday and needs …
}

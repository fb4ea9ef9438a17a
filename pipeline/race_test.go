//go:build race

package pipeline_test

// raceEnabled is true when the tests run with the race detector, which
// allocates on its own and so voids allocation counts.
const raceEnabled = true

//go:build race

package integration_test

// raceEnabled builds the ragpipe binary under test with the race detector
// when the tests themselves run with it.
const raceEnabled = true

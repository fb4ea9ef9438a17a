package cputime

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses; utime and stime are
	// fields 14 and 15, in clock ticks.
	const stat = "4242 (qdrant (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 31 0 5 1000 200\n"
	if got, err := parseStat([]byte(stat)); err != nil || got != 3250*time.Millisecond {
		t.Fatalf("parseStat = %v, %v; want 3.25s", got, err)
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("a truncated stat parsed")
	}
}

func TestSelfAndProcess(t *testing.T) {
	start, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	for self := start; self-start < 20*time.Millisecond; { // CPU time Process's ticks can see
		if self, err = Self(); err != nil || self < start {
			t.Fatalf("Self() = %v, %v after %v", self, err, start)
		}
	}
	if total, system, err := SelfSystem(); err != nil || system < 0 || system > total {
		t.Errorf("SelfSystem() = %v, %v, %v", total, system, err)
	}
	if proc, err := Process(0); err != nil || proc <= 0 {
		t.Errorf("Process(self) = %v, %v", proc, err)
	}
	if _, err := Process(-1); err == nil {
		t.Error("Process(-1) read a stat")
	}
}

package pipeline

import (
	"strings"
	"testing"
)

// TestStopKeys checks that every stop word has a slot of stopKeys to
// itself, and that words of the same bytes but another length or case,
// and longer words ending in a stop word, are not taken for stop words.
func TestStopKeys(t *testing.T) {
	slots := map[uint64]string{}
	for _, w := range stopWords {
		k := scannedKey(w)
		if other, ok := slots[stopSlot(k)]; ok {
			t.Fatalf("stop words %q and %q share slot %d: pick another stopMul", other, w, stopSlot(k))
		}
		slots[stopSlot(k)] = w
		if !isStopWord(k) {
			t.Fatalf("%q is not found", w)
		}
		for _, other := range []string{"x" + w, w + "x", "xxxxxxx" + w, strings.ToUpper(w), w + w} {
			if isStopWord(scannedKey(other)) {
				t.Fatalf("%q is taken for a stop word", other)
			}
		}
	}
}

// scannedKey is the key of word as the tokenizer makes it.
func scannedKey(word string) uint64 { return termKey(scannedTail(word), len(word)) }

// scannedTail is the tail of word as the tokenizer keeps it, its bytes
// shifted in one by one.
func scannedTail(word string) uint64 {
	var tail uint64
	for _, c := range []byte(word) {
		tail = tail<<8 | uint64(c)
	}
	return tail
}

// TestFNVPrimeInverse checks the inverse stemHash undoes FNV-1a's steps
// with.
func TestFNVPrimeInverse(t *testing.T) {
	if p := uint32(fnvPrime); p*fnvPrimeInverse != 1 {
		t.Fatalf("fnvPrime * fnvPrimeInverse = %d, want 1", p*fnvPrimeInverse)
	}
	for _, w := range []string{"queries", "caches", "files", "status", "toes", "series", "abcdefghijklmnopqrs"} {
		tail := scannedTail(w)
		if got, want := stemHash(fnv32([]byte(w)), tail, len(w)), fnv32(stemBytes([]byte(w), tail)); got != want {
			t.Errorf("stemHash(%q) = %#x, want %#x", w, got, want)
		}
	}
}

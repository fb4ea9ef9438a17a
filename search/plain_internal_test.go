package search

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// TestPlain8 checks plain8 against plainByte: every byte value in every
// position among plain bytes, and random words.
func TestPlain8(t *testing.T) {
	plain := func(c byte) bool { return c < utf8.RuneSelf && plainByte[c] }
	for pos := range 8 {
		for c := range 256 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			if got, want := plain8(binary.LittleEndian.Uint64(b)), plain(byte(c)); got != want {
				t.Fatalf("byte %#x at %d: plain8 %v, want %v", c, pos, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		x := rng.Uint64() & 0x7f7f7f7f7f7f7f7f // mostly ASCII, so that some words are plain
		if rng.IntN(4) == 0 {
			x = rng.Uint64()
		}
		want := true
		for i := range 8 {
			want = want && plain(byte(x>>(8*i)))
		}
		if got := plain8(x); got != want {
			t.Fatalf("%#016x: plain8 %v, want %v", x, got, want)
		}
	}
}

package pipeline

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// The identity tests hold Chunker.Split to the reference of
// chunk_ref_test.go: the same chunks at the same offsets, since chunk
// boundaries decide the stored points.

// identitySizes are the (size, overlap) pairs Split is checked with: the
// defaults, the worker's common ones and small ones that cut often.
var identitySizes = [][2]int{{2000, 200}, {1000, 100}, {900, 90}, {500, 0}, {300, 150}, {64, 8}, {7, 3}, {1, 0}, {2, 1}}

func checkSplitIdentity(t testing.TB, size, overlap int, text string) {
	t.Helper()
	c, err := NewChunker(size, overlap)
	if err != nil {
		t.Fatal(err)
	}
	got, want := c.Split(text), refSplit(c, text)
	if (got == nil) != (want == nil) || len(got) != len(want) {
		t.Fatalf("NewChunker(%d, %d).Split(%.200q): %d chunks, reference %d", size, overlap, text, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] || unsafe.StringData(got[i]) != unsafe.StringData(want[i]) {
			t.Fatalf("NewChunker(%d, %d).Split(%.200q): chunk %d is %.100q, reference %.100q", size, overlap, text, i, got[i], want[i])
		}
	}
}

func TestSplitIdentityCorpus(t *testing.T) {
	for _, text := range corpusTexts(t) {
		for _, so := range identitySizes[:6] {
			checkSplitIdentity(t, so[0], so[1], text)
		}
		if len(text) < 20000 {
			checkSplitIdentity(t, 7, 3, text)
		}
	}
}

// randomSplitText mixes words of plain ASCII and other runes with every
// kind of gap Split knows: spaces, line and paragraph breaks, sentence ends
// with and without closers, CJK full stops and long runs of whitespace.
func randomSplitText(rng *rand.Rand, n int) string {
	letters := []string{"a", "b", "Z", "9", ",", ";", "-", "é", "ß", "日", "本", "😀", "e\u0301", "\xff", "\xe2\x82", "'", "\"", ")"}
	seps := []string{" ", " ", " ", "  ", "\n", "\n\n", " \n \n ", ". ", "! ", "? ", ".\" ", ".) ", "\t", "\u00a0", "\u3000",
		"。", "。」", "」", "\r\n\r\n", "…", "\u2028", "\u0085", strings.Repeat(" ", 70), strings.Repeat("\n", 3)}
	var sb strings.Builder
	for sb.Len() < n {
		if rng.IntN(3) == 0 {
			sb.WriteString(seps[rng.IntN(len(seps))])
			continue
		}
		wordLen := 1 + rng.IntN(10)
		if rng.IntN(40) == 0 {
			wordLen = 30 + rng.IntN(300)
		}
		plain := rng.IntN(2) == 0 // mostly plain ASCII, as prose is
		for range wordLen {
			if plain {
				sb.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789,;-_/"[rng.IntN(41)])
			} else {
				sb.WriteString(letters[rng.IntN(len(letters))])
			}
		}
	}
	return sb.String()
}

func TestSplitIdentityRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 2))
	for i := range 4000 {
		text := randomSplitText(rng, rng.IntN(3000))
		so := identitySizes[i%len(identitySizes)]
		if i%5 == 0 {
			so[0] = 1 + rng.IntN(400)
			so[1] = rng.IntN(so[0])
		}
		checkSplitIdentity(t, so[0], so[1], text)
		checkSplitIdentity(t, 2000, 200, text)
	}
}

func TestSplitIdentityAdversarial(t *testing.T) {
	texts := []string{
		"", " ", "\n\n", "a", " a ", "a.", "a. b", "日本語の文章です。次の文。", "。」。」",
		strings.Repeat("a", 2000), strings.Repeat("a", 2001), strings.Repeat("é", 2000), strings.Repeat("é", 2001),
		strings.Repeat("é", 1001), strings.Repeat("\xff", 2001), strings.Repeat("a ", 1000) + "b",
		strings.Repeat(" ", 3000) + "a" + strings.Repeat("\n", 3000),
		strings.Repeat("word ", 500) + strings.Repeat("x", 5000) + strings.Repeat(" word", 500),
		strings.Repeat("Sentence one. ", 300), strings.Repeat("line\n", 600), strings.Repeat("para\n\n", 500),
		strings.Repeat(`He said "stop." Then "go!" `, 150),
	}
	for _, text := range texts {
		for _, so := range identitySizes {
			checkSplitIdentity(t, so[0], so[1], text)
		}
	}
}

func FuzzSplitIdentity(f *testing.F) {
	f.Add("Hello, world. This is a test.\n\nSecond paragraph here.", uint16(20), uint16(5))
	f.Add(strings.Repeat("a", 100), uint16(7), uint16(3))
	f.Add("日本語の文章です。次の文。😀 emoji", uint16(4), uint16(1))
	f.Add("a\xffb \xfe\xfd c.", uint16(2), uint16(1))
	f.Add(`He said "stop." Then "go!" And so on.`, uint16(12), uint16(6))
	f.Fuzz(func(t *testing.T, text string, size, overlap uint16) {
		s := 1 + int(size)%300
		checkSplitIdentity(t, s, int(overlap)%s, text)
	})
}

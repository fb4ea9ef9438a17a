package pipeline_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/ragpipe/ragpipe/pipeline"
)

func TestNewChunker(t *testing.T) {
	for _, tc := range []struct {
		name          string
		size, overlap int
		ok            bool
	}{
		{"defaults", 2000, 200, true},
		{"no overlap", 10, 0, true},
		{"largest overlap", 10, 9, true},
		{"size 1", 1, 0, true},
		{"size 0", 0, 0, false},
		{"negative size", -5, 0, false},
		{"negative overlap", 10, -1, false},
		{"overlap equal to size", 10, 10, false},
		{"overlap above size", 10, 11, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pipeline.NewChunker(tc.size, tc.overlap)
			if (err == nil) != tc.ok || (c != nil) != tc.ok {
				t.Errorf("NewChunker(%d, %d) = %v, %v; want ok=%v", tc.size, tc.overlap, c, err, tc.ok)
			}
		})
	}
}

// TestChunkerExamples shows which boundaries Split prefers.
func TestChunkerExamples(t *testing.T) {
	for _, tc := range []struct {
		name          string
		size, overlap int
		text          string
		want          []string
	}{
		{
			name: "empty", size: 10, text: "",
			want: nil,
		},
		{
			name: "whitespace only", size: 10, text: " \n\t\u00a0\u3000 ",
			want: nil,
		},
		{
			name: "fits whole, trimmed", size: 20, overlap: 5, text: "\n  Hello, world.\n\nBye.  \n",
			want: []string{"Hello, world.\n\nBye."},
		},
		{
			name: "exactly size runes", size: 5, text: "héllo",
			want: []string{"héllo"},
		},
		{
			name: "paragraph before sentence", size: 60, overlap: 0,
			text: "The first paragraph ends here. Only one.\n\nThe second one. It is a bit longer than the window.",
			want: []string{"The first paragraph ends here. Only one.", "The second one. It is a bit longer than the window."},
		},
		{
			name: "sentence before word", size: 50, overlap: 0,
			text: "One sentence is written here. Another one follows and runs past the end.",
			want: []string{"One sentence is written here.", "Another one follows and runs past the end."},
		},
		{
			name: "sentence ending in a quote", size: 40, overlap: 0,
			text: `He said "it is done." Then he left the room for good.`,
			want: []string{`He said "it is done."`, "Then he left the room for good."},
		},
		{
			name: "line before word", size: 30, overlap: 0,
			text: "- first item of a list\n- second item, longer",
			want: []string{"- first item of a list", "- second item, longer"},
		},
		{
			name: "word rather than mid-word", size: 10, overlap: 0,
			text: "aaaa bbbbbbbb cc",
			want: []string{"aaaa", "bbbbbbbb", "cc"},
		},
		{
			name: "mid-word only in a word longer than a chunk", size: 10, overlap: 0,
			text: "ab cdefghijklmnopqrstuvwxyz end",
			want: []string{"ab", "cdefghijkl", "mnopqrstuv", "wxyz end"},
		},
		{
			name: "runes, not bytes", size: 4, overlap: 0,
			text: "日本語の文章😀😀😀",
			want: []string{"日本語の", "文章😀😀", "😀"},
		},
		{
			name: "CJK full stop", size: 12, overlap: 0,
			text: "今日は晴れです。明日は雨が降るでしょう。",
			want: []string{"今日は晴れです。", "明日は雨が降るでしょう。"},
		},
		{
			name: "overlap starts at a sentence", size: 60, overlap: 25,
			text: "Alpha beta gamma delta epsilon zeta. Eta theta iota. Kappa lambda mu nu xi omicron pi rho.",
			want: []string{"Alpha beta gamma delta epsilon zeta. Eta theta iota.", "Eta theta iota. Kappa lambda mu nu xi omicron pi rho."},
		},
		{
			name: "overlap inside a long word", size: 10, overlap: 3,
			text: "abcdefghijklmnopq",
			want: []string{"abcdefghij", "hijklmnopq"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pipeline.NewChunker(tc.size, tc.overlap)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Split(tc.text)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Split(%q) =\n%q\nwant\n%q", tc.text, got, tc.want)
			}
			checkChunkProperties(t, c, tc.size, tc.overlap, tc.text, got)
		})
	}
}

// TestChunkerProseShape checks the shape of the default chunking of prose:
// chunks at least half full and overlaps of about the configured overlap.
func TestChunkerProseShape(t *testing.T) {
	c, err := pipeline.NewChunker(2000, 200)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		text := randomProse(rng, 20000+rng.IntN(20000))
		chunks := c.Split(text)
		checkChunkProperties(t, c, 2000, 200, text, chunks)
		offs := chunkOffsets(t, text, chunks)
		for i := range chunks {
			if n := utf8.RuneCountInString(chunks[i]); i < len(chunks)-1 && n < 1000 {
				t.Errorf("chunk %d has %d runes, less than half the size", i, n)
			}
			if i > 0 {
				shared := utf8.RuneCountInString(text[offs[i] : offs[i-1]+len(chunks[i-1])])
				if shared < 100 || shared > 200 {
					t.Errorf("chunks %d and %d share %d runes, want 100-200", i-1, i, shared)
				}
			}
		}
	}
}

func TestChunkerProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(42, 7))
	for i := range 2000 {
		size := 1 + rng.IntN(120)
		if i%10 == 0 {
			size = 1 + rng.IntN(3)
		}
		overlap := rng.IntN(size)
		if i%4 == 0 {
			overlap = 0
		}
		text := randomChunkText(rng, rng.IntN(1200))
		c, err := pipeline.NewChunker(size, overlap)
		if err != nil {
			t.Fatal(err)
		}
		chunks := c.Split(text)
		if !checkChunkProperties(t, c, size, overlap, text, chunks) {
			t.Fatalf("case %d failed: NewChunker(%d, %d).Split(%q)", i, size, overlap, text)
		}
	}
}

func TestChunkerCrafted(t *testing.T) {
	texts := []string{
		strings.Repeat("a", 5000),
		strings.Repeat("a ", 3000),
		strings.Repeat(" ", 3000) + "x" + strings.Repeat(" ", 3000),
		strings.Repeat("word ", 100) + strings.Repeat("x", 300) + strings.Repeat(" word", 100),
		strings.Repeat("word"+strings.Repeat(" ", 500), 20),
		strings.Repeat("Sentence. ", 500),
		strings.Repeat("Paragraph one.\n\n", 300),
		strings.Repeat("line\n", 700),
		strings.Repeat("😀", 3000),
		strings.Repeat("日本語。", 1000),
		strings.Repeat("e\u0301 ", 1000),
		strings.Repeat("\xff\xfe ", 1000),
		strings.Repeat("。」", 500),
		strings.Repeat(".\"", 500) + " end",
		strings.Repeat("\u00a0a\u3000b\u2028", 500),
		"x" + strings.Repeat(" ", 100) + "y",
	}
	sizes := [][2]int{{1, 0}, {2, 1}, {7, 3}, {10, 0}, {10, 9}, {50, 10}, {100, 99}, {2000, 200}}
	for _, text := range texts {
		for _, so := range sizes {
			c, err := pipeline.NewChunker(so[0], so[1])
			if err != nil {
				t.Fatal(err)
			}
			if !checkChunkProperties(t, c, so[0], so[1], text, c.Split(text)) {
				t.Fatalf("NewChunker(%d, %d).Split(%q) failed", so[0], so[1], text)
			}
		}
	}
}

func FuzzChunker(f *testing.F) {
	f.Add("Hello, world. This is a test.\n\nSecond paragraph here.", uint16(20), uint16(5))
	f.Add(strings.Repeat("a", 100), uint16(7), uint16(3))
	f.Add("日本語の文章です。次の文。😀 emoji", uint16(4), uint16(1))
	f.Add("  \n\t ", uint16(3), uint16(0))
	f.Add("a\xffb \xfe\xfd c.", uint16(2), uint16(1))
	f.Add(`He said "stop." Then "go!" And so on.`, uint16(12), uint16(6))
	f.Fuzz(func(t *testing.T, text string, size, overlap uint16) {
		s := 1 + int(size)%300
		o := int(overlap) % s
		c, err := pipeline.NewChunker(s, o)
		if err != nil {
			t.Fatal(err)
		}
		checkChunkProperties(t, c, s, o, text, c.Split(text))
	})
}

func BenchmarkSplit(b *testing.B) {
	c, err := pipeline.NewChunker(2000, 200)
	if err != nil {
		b.Fatal(err)
	}
	text := randomProse(rand.New(rand.NewPCG(3, 4)), 10<<10)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if len(c.Split(text)) == 0 {
			b.Fatal("no chunks")
		}
	}
}

// checkChunkProperties checks everything Split promises and reports whether
// it all holds.
func checkChunkProperties(t testing.TB, c *pipeline.Chunker, size, overlap int, text string, chunks []string) bool {
	t.Helper()
	failed := false
	fail := func(format string, args ...any) {
		t.Helper()
		failed = true
		t.Errorf(format, args...)
	}
	trimmed := strings.TrimSpace(text)
	if trimmed == "" {
		if chunks != nil {
			fail("blank text gave chunks %q", chunks)
		}
		return !failed
	}
	if utf8.RuneCountInString(trimmed) <= size && (len(chunks) != 1 || chunks[0] != trimmed) {
		fail("a text of %d runes, fitting in %d, gave %d chunks", utf8.RuneCountInString(trimmed), size, len(chunks))
	}
	if len(chunks) == 0 {
		fail("no chunks for a non-blank text")
		return false
	}
	offs := chunkOffsets(t, text, chunks)
	if offs == nil {
		return false
	}
	covered := 0 // text[:covered] is covered by the chunks so far
	for i, ch := range chunks {
		start, end := offs[i], offs[i]+len(ch)
		if ch == "" || strings.TrimSpace(ch) != ch {
			fail("chunk %d %q is empty or has surrounding whitespace", i, ch)
		}
		if n := utf8.RuneCountInString(ch); n > size {
			fail("chunk %d has %d runes, more than %d", i, n, size)
		}
		if !isBlankText(text[covered:max(covered, start)]) {
			fail("text between chunks %d and %d is not covered: %q", i-1, i, text[covered:start])
		}
		if i > 0 {
			prevStart, prevEnd := offs[i-1], offs[i-1]+len(chunks[i-1])
			if start <= prevStart || end <= prevEnd {
				fail("chunk %d [%d,%d) does not come after chunk %d [%d,%d)", i, start, end, i-1, prevStart, prevEnd)
			}
			if start < prevEnd {
				if n := utf8.RuneCountInString(text[start:prevEnd]); n > overlap {
					fail("chunks %d and %d share %d runes, more than %d", i-1, i, n, overlap)
				}
			}
		}
		// A chunk ends inside a word only when the word is longer than a
		// chunk: then the chunk is all one word, of exactly size runes.
		if end < len(text) && endsMidWord(text[:end], text[end:]) &&
			(strings.IndexFunc(ch, unicode.IsSpace) >= 0 || utf8.RuneCountInString(ch) != size) {
			fail("chunk %d %q ends inside a word shorter than a chunk", i, ch)
		}
		covered = max(covered, end)
	}
	if !isBlankText(text[covered:]) {
		fail("end of text not covered: %q", text[covered:])
	}
	if failed {
		t.Logf("size %d, overlap %d, chunks %q", size, overlap, chunks)
	}
	return !failed
}

// chunkOffsets returns the offset of every chunk in text. The chunks must be
// substrings of text itself, sharing its memory: Split does not copy.
func chunkOffsets(t testing.TB, text string, chunks []string) []int {
	t.Helper()
	base := uintptr(unsafe.Pointer(unsafe.StringData(text)))
	offs := make([]int, len(chunks))
	for i, ch := range chunks {
		off := int(uintptr(unsafe.Pointer(unsafe.StringData(ch))) - base)
		if ch == "" || off < 0 || off+len(ch) > len(text) || text[off:off+len(ch)] != ch {
			t.Errorf("chunk %d %q is not a substring of the text", i, ch)
			return nil
		}
		offs[i] = off
	}
	return offs
}

// endsMidWord reports whether a cut between before and after splits a word:
// both sides are non-space, and before does not end with a CJK full stop
// (maybe followed by closing quotes), which is a boundary by itself.
func endsMidWord(before, after string) bool {
	last, _ := utf8.DecodeLastRuneInString(before)
	next, _ := utf8.DecodeRuneInString(after)
	if unicode.IsSpace(last) || unicode.IsSpace(next) {
		return false
	}
	stripped := strings.TrimRight(before, "\"')]}”’»」』）")
	stop, _ := utf8.DecodeLastRuneInString(stripped)
	return !strings.ContainsRune("。！？｡", stop)
}

func isBlankText(s string) bool { return strings.TrimSpace(s) == "" }

// randomChunkText returns n pieces of text mixing words of many lengths,
// multi-byte runes, invalid UTF-8 and every kind of separator.
func randomChunkText(rng *rand.Rand, n int) string {
	letters := []string{"a", "b", "é", "ß", "日", "本", "😀", "e\u0301", "\xff", "Z", "9", ","}
	seps := []string{" ", " ", " ", "  ", "\n", "\n\n", " \n \n ", ". ", "! ", "? ", ".\" ", "\t", "\u00a0", "\u3000", "。", "」", "\r\n\r\n", "…"}
	var sb strings.Builder
	for range n {
		if rng.IntN(3) == 0 {
			sb.WriteString(seps[rng.IntN(len(seps))])
			continue
		}
		wordLen := 1 + rng.IntN(8)
		if rng.IntN(40) == 0 {
			wordLen = 30 + rng.IntN(200)
		}
		for range wordLen {
			sb.WriteString(letters[rng.IntN(len(letters))])
		}
	}
	return sb.String()
}

// randomProse returns about n bytes of English-like prose: short words,
// sentences and paragraphs.
func randomProse(rng *rand.Rand, n int) string {
	words := strings.Fields("the a of to and in is it that for on was with as by at instance region cluster " +
		"database replica primary production tagged owner platform running since storage network latency budget")
	var sb strings.Builder
	for sb.Len() < n {
		sentence := 5 + rng.IntN(20)
		for i := range sentence {
			w := words[rng.IntN(len(words))]
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			sb.WriteString(w)
			if i < sentence-1 {
				sb.WriteByte(' ')
			}
		}
		switch rng.IntN(6) {
		case 0:
			sb.WriteString(".\n\n")
		default:
			sb.WriteString(". ")
		}
	}
	return sb.String()
}

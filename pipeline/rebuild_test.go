package pipeline_test

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

func TestRebuildExamples(t *testing.T) {
	for _, tc := range []struct {
		name          string
		size, overlap int
		chunks        []string
		want          string
	}{
		{name: "none", size: 10, want: ""},
		{name: "one", size: 10, chunks: []string{"a b"}, want: "a b"},
		{
			name: "overlapping words", size: 20, overlap: 8,
			chunks: []string{"one two three four", "four five six"},
			want:   "one two three four five six",
		},
		{
			name: "no overlap: a space", size: 20, overlap: 0,
			chunks: []string{"one two three four", "five six"},
			want:   "one two three four five six",
		},
		{
			name: "no overlap after a paragraph break: a blank line", size: 24, overlap: 0,
			chunks: []string{"one two three.\n\nfour five", "six"},
			want:   "one two three.\n\nfour five\n\nsix",
		},
		{
			name: "no overlap after a CJK full stop: nothing", size: 4, overlap: 0,
			chunks: []string{"日本語。", "次。"},
			want:   "日本語。次。",
		},
		{
			name: "a word longer than a chunk", size: 4, overlap: 0,
			chunks: []string{"abcd", "efgh", "ij"},
			want:   "abcdefghij",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pipeline.NewChunker(tc.size, tc.overlap)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Rebuild(tc.chunks); got != tc.want {
				t.Errorf("Rebuild(%q) = %q, want %q", tc.chunks, got, tc.want)
			}
		})
	}
}

// rebuildTally counts texts by what Rebuild made of their chunks.
type rebuildTally struct {
	texts, single, overlapping, gapped, gappedExact, gappedWords, gappedResplit int
}

// check rebuilds text's chunks: exactly when every junction overlaps,
// else it counts whether the text came back exact or with the same words.
func (tl *rebuildTally) check(t *testing.T, c *pipeline.Chunker, text string) bool {
	t.Helper()
	chunks := c.Split(text)
	offs := chunkOffsets(t, text, chunks)
	if len(chunks) > 0 && offs == nil {
		return false
	}
	gapped := false
	for i := 1; i < len(chunks); i++ {
		if offs[i] >= offs[i-1]+len(chunks[i-1]) {
			gapped = true
		}
	}
	got, want := c.Rebuild(chunks), strings.TrimSpace(text)
	tl.texts++
	if len(chunks) < 2 {
		tl.single++
	}
	if !gapped {
		tl.overlapping++
		if got != want {
			t.Errorf("Rebuild(Split(%q)) = %q, want it trimmed; chunks %q", text, got, chunks)
			return false
		}
		return true
	}
	tl.gapped++
	if slices.Equal(c.Split(got), chunks) {
		tl.gappedResplit++
	}
	switch {
	case got == want:
		tl.gappedExact++
	case strings.Join(strings.Fields(got), " ") == strings.Join(strings.Fields(want), " "):
		tl.gappedWords++
	}
	return true
}

func (tl *rebuildTally) log(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %d texts, %d in one chunk or none, %d with every junction overlapping (rebuilt exactly), %d with a junction that does not overlap: %d of them rebuilt exactly, %d more with the same words; %d split again into the same chunks",
		what, tl.texts, tl.single, tl.overlapping-tl.single, tl.gapped, tl.gappedExact, tl.gappedWords, tl.gappedResplit)
}

func TestRebuildRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(15, 2026))
	gens := []struct {
		name string
		text func(*rand.Rand) string
	}{
		{"mixed", func(r *rand.Rand) string { return randomChunkText(r, r.IntN(1500)) }},
		{"prose", func(r *rand.Rand) string { return randomProse(r, r.IntN(6000)) }},
		{"lines", randomLines},
		{"cjk", randomCJK},
	}
	sizes := [][2]int{{1, 0}, {3, 1}, {10, 0}, {10, 9}, {40, 10}, {64, 0}, {100, 30}, {200, 20}, {500, 50}, {2000, 200}}
	for _, g := range gens {
		t.Run(g.name, func(t *testing.T) {
			var tl rebuildTally
			for i := range 1500 {
				so := sizes[i%len(sizes)]
				if i%7 == 0 {
					so[0] = 1 + rng.IntN(150)
					so[1] = rng.IntN(so[0])
				}
				c, err := pipeline.NewChunker(so[0], so[1])
				if err != nil {
					t.Fatal(err)
				}
				if !tl.check(t, c, g.text(rng)) {
					t.Fatalf("case %d, NewChunker(%d, %d)", i, so[0], so[1])
				}
			}
			tl.log(t, g.name)
		})
	}
}

func TestRebuildCorpus(t *testing.T) {
	var texts []string
	err := filepath.WalkDir("../evaluation/testdata/corpus", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		texts = append(texts, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) < 10 {
		t.Fatalf("%d corpus texts", len(texts))
	}
	for _, so := range [][2]int{{2000, 200}, {1000, 100}, {500, 50}, {800, 0}, {300, 150}} {
		c, err := pipeline.NewChunker(so[0], so[1])
		if err != nil {
			t.Fatal(err)
		}
		var tl rebuildTally
		for _, text := range texts {
			tl.check(t, c, text)
		}
		tl.log(t, fmt.Sprintf("corpus, chunks of %d overlapping by %d", so[0], so[1]))
	}
}

func FuzzRebuild(f *testing.F) {
	f.Add("Hello, world. This is a test.\n\nSecond paragraph here.", uint16(20), uint16(5))
	f.Add("日本語の文章です。次の文。😀 emoji", uint16(4), uint16(1))
	f.Add(strings.Repeat("a", 100)+" b", uint16(7), uint16(3))
	f.Fuzz(func(t *testing.T, text string, size, overlap uint16) {
		s := 1 + int(size)%300
		c, err := pipeline.NewChunker(s, int(overlap)%s)
		if err != nil {
			t.Fatal(err)
		}
		var tl rebuildTally
		tl.check(t, c, text)
	})
}

// randomLines returns text of short lines, as in lists and logs.
func randomLines(rng *rand.Rand) string {
	var sb strings.Builder
	for range rng.IntN(200) {
		for j := range 1 + rng.IntN(10) {
			if j > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(strings.Repeat("x", 1+rng.IntN(12)))
		}
		sb.WriteString([]string{"\n", "\n", "\r\n", "\n\n", "  \n"}[rng.IntN(5)])
	}
	return sb.String()
}

// randomCJK returns Chinese-like text: no spaces, full stops and closers,
// now and then a Latin word or a line break.
func randomCJK(rng *rand.Rand) string {
	runes := []rune("日本語中文字的是在有人这个们来到时大地为子中你说生国年着就那和要她出也得里后自以会")
	var sb strings.Builder
	for range rng.IntN(120) {
		for range 2 + rng.IntN(30) {
			sb.WriteRune(runes[rng.IntN(len(runes))])
		}
		sb.WriteString([]string{"。", "。", "！", "？", "。」", "，", " ok ", "\n", "。\n\n"}[rng.IntN(9)])
	}
	return sb.String()
}

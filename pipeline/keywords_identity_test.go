package pipeline

import (
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The identity tests hold Keywords, KeywordsWith, QueryKeywords and
// QueryKeywordsWith to the reference tokenizer of keywords_ref_test.go,
// bit for bit: keyword vectors are stored, so ids, weights and order must
// never change.

// identityTermIDs are the term-id functions the keyed variants are checked
// with: nil (FNV-1a), a keyed-like hash, and degenerate ones whose ids
// collide in the count table.
var identityTermIDs = []struct {
	name string
	f    func([]byte) uint32
}{
	{"fnv", nil},
	{"keyed", func(b []byte) uint32 {
		h := uint64(0x9e3779b97f4a7c15)
		for _, c := range b {
			h = (h ^ uint64(c)) * 0x100000001b3
		}
		return uint32(h ^ h>>32)
	}},
	{"length", func(b []byte) uint32 { return uint32(len(b)) }},
	{"zero", func([]byte) uint32 { return 0 }},
	{"slot collisions", func(b []byte) uint32 { return fnv32(b) << 23 }},
}

func checkKeywordsIdentity(t testing.TB, text string) {
	t.Helper()
	checkKeywordsIdentityWith(t, text, identityTermIDs)
}

func checkKeywordsIdentityWith(t testing.TB, text string, termIDs []struct {
	name string
	f    func([]byte) uint32
}) {
	t.Helper()
	for _, id := range termIDs {
		if id.f == nil {
			sameVector(t, "Keywords", text, Keywords(text), refKeywords(text, nil))
			sameVector(t, "QueryKeywords", text, QueryKeywords(text), refQueryKeywords(text, nil))
			continue
		}
		sameVector(t, "KeywordsWith "+id.name, text, KeywordsWith(text, id.f), refKeywords(text, id.f))
		sameVector(t, "QueryKeywordsWith "+id.name, text, QueryKeywordsWith(text, id.f), refQueryKeywords(text, id.f))
	}
}

func sameVector(t testing.TB, what, text string, got, want *SparseVector) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Fatalf("%s(%.200q) = %v, reference %v", what, text, got, want)
	}
	if got == nil {
		return
	}
	same := slices.Equal(got.Indices, want.Indices) && len(got.Values) == len(want.Values)
	for i := range got.Values {
		same = same && math.Float32bits(got.Values[i]) == math.Float32bits(want.Values[i])
	}
	if !same {
		t.Fatalf("%s(%.200q):\n got  %v\n want %v", what, text, got, want)
	}
}

// corpusTexts returns the texts of the repository's corpora.
func corpusTexts(t testing.TB) []string {
	t.Helper()
	var texts []string
	for _, dir := range []string{"../examples", "../evaluation/testdata"} {
		fsys := os.DirFS(dir)
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				var b []byte
				b, err = fs.ReadFile(fsys, path)
				texts = append(texts, string(b))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(texts) < 100 {
		t.Fatalf("%d corpus texts", len(texts))
	}
	return texts
}

func TestKeywordsIdentityCorpus(t *testing.T) {
	t.Parallel()
	c, err := NewChunker(900, 90)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, text := range corpusTexts(t) {
		if len(text) < 20000 {
			checkKeywordsIdentityWith(t, text, identityTermIDs[:2])
		}
		for _, chunk := range c.Split(text) {
			checkKeywordsIdentityWith(t, chunk, identityTermIDs[:2])
			n++
		}
	}
	t.Logf("%d chunks", n)
}

func TestKeywordsIdentityAdversarial(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	texts := []string{
		"", " ", "a", "A", "Is", "IS", "iS", "s", "'s", "’t", "don’t", "o'clock",
		"maxAckPending", "MaxAckPending", "HTTPServer", "HTTP", "HTTPs", "getHTTPResponseCode", "ABCdef", "aBC", "x1Y2z3",
		"/etc/nats/nats.conf", `C:\Users\bob\AppData`, "https://example.com/a/b?c=d&e=f#frag", "a.b.c.d.e.f.g.h",
		"__init__", "--flag=value", "::1", "...", "a--b", "-a-", "_", "node_modules/.bin/tsc",
		"queries caches files status process toes aies eies ies es ss us bus buses series",
		"QUERIES Caches FILES", "analyses theses crises", "Ies IES ieS",
		long(63), long(64), long(65), long(64) + "s", long(62) + "ies", long(63) + "s",
		long(32) + "_" + long(32), long(32) + "_" + long(31), long(32) + "_" + long(33),
		long(30) + "Yy" + long(30), long(31) + "Yy" + long(31), long(70) + "_ab", "ab_" + long(70),
		strings.Repeat("ab_", 40) + "cd", strings.Repeat("aB", 50), strings.Repeat("Ab", 50),
		long(5000), strings.Repeat("é", 40), strings.Repeat("é", 31) + "ab", strings.Repeat("日", 100),
		"Straße ÉCOLE naïve Σίσυφος ΣΊΣΥΦΟΣ İstanbul ǅemal Kelvin K ﬃ",
		"İİİ iİi Aİ İA", "KK KaKb", "ǅǅ ǆǄ",
		"検索増強生成 ひらがな カタカナ 한국어 텍스트 ภาษาไทย", "日本語のテキスト。次の文！",
		"e\u0301cole cafe\u0301 \u0301x", "emoji 😀 in🎉side a😀b",
		"bad \xff utf8 a\xffb \xc3 \xe2\x82 \xed\xa0\x80 end",
		"tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic space",
		"the of and to in is it", "THE Of AnD", "what which who whom when where why how",
		"v1.2.3 2024-03-01T12:00:00Z 10.0.0.1:4222 0xDEADbeef 1e-9 3.14",
		"snake_case_Name kebab-case-NAME dot.Case.name Mixed_caseName",
		"AWS::EC2::Instance arn:aws:iam::123456789012:role/Admin",
		"ünïcödé ÜNÏCÖDÉ ÜberMaß maßÜber",
	}
	// Terms of every frequency from 1 to 12, around the weights worked
	// out once per text.
	var freq strings.Builder
	for k := 1; k <= 12; k++ {
		freq.WriteString(strings.Repeat(fmt.Sprintf("term%d ", k), k))
	}
	texts = append(texts, freq.String())
	for _, text := range texts {
		checkKeywordsIdentity(t, text)
	}
}

// randomKeywordText mixes words, identifiers, separators and runes of every
// class the tokenizer knows, and some it must skip.
func randomKeywordText(rng *rand.Rand, n int) string {
	pieces := []string{
		"a", "b", "z", "q", "s", "es", "ies", "us", "ss", "A", "B", "Z", "S", "IES", "0", "9",
		"é", "É", "ß", "Σ", "σ", "ς", "İ", "K", "ǅ", "\u0301", "日", "の", "カ", "한", "😀", "\xff", "\xc3",
		"’", "'", "_", "-", ".", "/", "\\", ":",
	}
	seps := []string{" ", " ", " ", "\n", ", ", ". ", "\t", "(", ")", "=", "\u00a0", "\u3000", "\"", "#"}
	words := strings.Fields("the of and is maxAckPending HTTPServer queries caches status process " +
		"/etc/nats/nats.conf max_ack_pending eu-west-1 nats.Conn don't Straße ÉCOLE 検索")
	var sb strings.Builder
	for sb.Len() < n {
		switch k := rng.IntN(10); {
		case k < 3:
			sb.WriteString(seps[rng.IntN(len(seps))])
		case k < 5:
			sb.WriteString(words[rng.IntN(len(words))])
		default:
			wordLen := 1 + rng.IntN(10)
			if rng.IntN(30) == 0 {
				wordLen = 20 + rng.IntN(60)
			}
			for range wordLen {
				sb.WriteString(pieces[rng.IntN(len(pieces))])
			}
		}
	}
	return sb.String()
}

func TestKeywordsIdentityRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(17, 1))
	for i := range 1500 {
		n := 1 + rng.IntN(300)
		if i%100 == 0 {
			n = 5000 + rng.IntN(10000) // beyond the count table's first size
		}
		checkKeywordsIdentity(t, randomKeywordText(rng, n))
	}
}

// TestKeywordsIdentityManyTerms grows the count table several times over.
func TestKeywordsIdentityManyTerms(t *testing.T) {
	var sb strings.Builder
	for i := range 60000 {
		fmt.Fprintf(&sb, "w%x ", i*7919%50000)
	}
	text := sb.String()
	checkKeywordsIdentityWith(t, text, identityTermIDs[:2])
	// The pooled tokenizers are left clean: a short text after a huge one.
	checkKeywordsIdentity(t, "qdrant stores vectors")
}

// TestKeywordsPanickingTermID checks that a term-id function that panics
// leaves no tokenizer state behind for the next call.
func TestKeywordsPanickingTermID(t *testing.T) {
	for range 10 {
		func() {
			defer func() { _ = recover() }()
			KeywordsWith("alpha beta gamma delta", func(b []byte) uint32 {
				if string(b) == "gamma" {
					panic("boom")
				}
				return fnv32(b)
			})
		}()
		checkKeywordsIdentity(t, "alpha beta")
	}
}

func FuzzKeywordsIdentity(f *testing.F) {
	for _, s := range []string{
		"maxAckPending /etc/nats/nats.conf", "HTTPServer queries", "Straße İ K 日本", "a\xffb’s",
		strings.Repeat("x", 64) + "_y", "don't stop the caches",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		checkKeywordsIdentity(t, text)
		if !utf8.ValidString(text) {
			checkKeywordsIdentity(t, strings.ToValidUTF8(text, "\uFFFD"))
		}
	})
}

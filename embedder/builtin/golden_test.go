package builtin

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"
)

type goldenCase struct {
	Text   string    `json:"text"`
	Tokens []int     `json:"tokens"`
	Vector []float32 `json:"vector"`
}

func readGolden(t *testing.T) []goldenCase {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct{ Cases []goldenCase }
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Cases
}

func cosine(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return d / math.Sqrt(na*nb)
}

// TestGoldenTokens checks the tokenizer against the reference's token ids.
func TestGoldenTokens(t *testing.T) {
	m := mustModel(t)
	for _, c := range readGolden(t) {
		if got := m.tok.encode(c.Text); !slices.Equal(got, c.Tokens) && !(len(got) == 0 && len(c.Tokens) == 0) {
			t.Errorf("encode(%.40q):\n got %v\nwant %v", c.Text, got, c.Tokens)
		}
	}
}

// TestGoldenVectors checks the forward pass, with the shipped weights,
// against the reference's vectors.
func TestGoldenVectors(t *testing.T) {
	m := mustModel(t)
	s := newScratch()
	out := make([]float32, modelDims)
	lo, sum := 1.0, 0.0
	cases := readGolden(t)
	for _, c := range cases {
		m.embed(s, c.Text, out, 1)
		cos := cosine(out, c.Vector)
		lo, sum = min(lo, cos), sum+cos
		if cos < 0.999 {
			t.Errorf("cosine(%.40q) = %.5f, want >= 0.999", c.Text, cos)
		}
	}
	t.Logf("cosine to the reference over %d texts: min %.7f, mean %.7f", len(cases), lo, sum/float64(len(cases)))
}

func mustModel(t testing.TB) *model {
	t.Helper()
	m, err := loadModel(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

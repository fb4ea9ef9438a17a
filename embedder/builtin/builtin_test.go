package builtin_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/embedder/builtin"
)

func TestDimensions(t *testing.T) {
	if _, err := builtin.New(builtin.Config{Dimensions: 384}); err == nil || !strings.Contains(err.Error(), "512") {
		t.Fatalf("New with 384 dimensions: %v, want an error naming 512", err)
	}
	short, err := builtin.New(builtin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	long, err := builtin.New(builtin.Config{Dimensions: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if short.Dimensions() != 512 || long.Dimensions() != 1024 {
		t.Fatalf("dimensions %d and %d, want 512 and 1024", short.Dimensions(), long.Dimensions())
	}
	texts := []string{"", " ", "a", "The cluster ran out of disk space overnight.", strings.Repeat("long text ", 500), "\xff\xfe invalid UTF-8"}
	a, err := short.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := long.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range texts {
		var norm float64
		for j, v := range b[i] {
			if j < 512 && v != a[i][j] || j >= 512 && v != 0 {
				t.Fatalf("text %d: component %d = %g, want %g", i, j, v, a[i][min(j, 511)])
			}
			norm += float64(v) * float64(v)
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Errorf("text %d: squared norm %g, want 1", i, norm)
		}
	}
}

// TestConcurrent embeds the same texts from several goroutines, in batches
// and one by one: every vector is identical to the batch's.
func TestConcurrent(t *testing.T) {
	e, err := builtin.New(builtin.Config{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, 20)
	for i := range texts {
		texts[i] = strings.Repeat("document number "+string(rune('a'+i))+" about storage. ", i+1)
	}
	want, err := e.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range texts {
				i := (i + g) % len(texts)
				got, err := e.Embed(context.Background(), texts[i:i+1])
				if err == nil && !slices.Equal(got[0], want[i]) {
					err = errors.New("vectors differ between calls")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCancel(t *testing.T) {
	e, err := builtin.New(builtin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if v, err := e.Embed(ctx, []string{"a", "b"}); !errors.Is(err, context.Canceled) || v != nil {
		t.Fatalf("Embed with a cancelled context: %v, %v; want context.Canceled and no vectors", len(v), err)
	}
	if id := e.Identity(); !strings.HasPrefix(id, "builtin/") {
		t.Errorf("Identity() = %q", id)
	}
}

// TestWindows: more windows change nothing for a text of fewer than 128
// pieces, change the vector of a longer one, and change the identity.
func TestWindows(t *testing.T) {
	one, err := builtin.New(builtin.Config{})
	if err != nil {
		t.Fatal(err)
	}
	four, err := builtin.New(builtin.Config{Windows: 4})
	if err != nil {
		t.Fatal(err)
	}
	if one.Identity() == four.Identity() {
		t.Errorf("identity %q for 1 and 4 windows", one.Identity())
	}
	texts := []string{"a short text about disks", strings.Repeat("The backup ran at night. ", 10) + strings.Repeat("Invoices are paid monthly. ", 60)}
	a, err := one.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := four.Embed(t.Context(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a[0], b[0]) {
		t.Error("a short text's vector depends on the windows")
	}
	if slices.Equal(a[1], b[1]) {
		t.Error("a long text's vector is the same with 4 windows as with 1")
	}
}

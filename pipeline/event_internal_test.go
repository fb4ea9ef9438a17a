package pipeline

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecodeFastVector checks that the fast path for vectors (splitVector)
// decodes every body exactly as encoding/json does: same event, same
// rejection.
func FuzzDecodeFastVector(f *testing.F) {
	for _, body := range []string{
		`{"doc_id":"d","vector":[1,-2.5e-3,0,-0,3E+2]}`,
		` { "doc_id" : "d" , "vector" : [ 1 , 2 ] , "text" : "t" } `,
		`{"vector":[1,2],"doc_id":"d","metadata":{"vector":[3]},"text":"a \"vector\": [9] b"}`,
		`{"doc_id":"d","vector":[1,2],"Vector":[3,4]}`,
		`{"doc_id":"d","vector":[1,2],"vector":[3,4]}`,
		`{"doc_id":"d","vect\u006fr":[1,2]}`,
		`{"doc_id":"d","VECTOR":[5]}`,
		`{"doc_id":"d","vector":[]}`,
		`{"doc_id":"d","vector":[1,"x"]}`,
		`{"doc_id":"d","vector":[1e39]}`,
		`{"doc_id":"d","vector":[01]}`,
		`{"doc_id":"d","vector":[1.]}`,
		`{"doc_id":"d","vector":[.5]}`,
		`{"doc_id":"d","vector":[+1]}`,
		`{"doc_id":"d","vector":[1,]}`,
		`{"doc_id":"d","vector":[1 2]}`,
		`{"doc_id":"d","vector":[1,2]`,
		`{"doc_id":"d","vector":[1,2]} x`,
		`{"doc_id":"d","vector":[1,2],}`,
		`{"doc_id":d,"vector":[1,2]}`,
		`{"doc_id":"d","text":5,"vector":[1]}`,
		`{"doc_id":"d","vector":null,"text":"t"}`,
		`{"doc_id":"d","vector":[[1]]}`,
		`{"op":"delete","doc_id":"d","vector":[1]}`,
		`{"doc_id":"d","version":3,"vector":[1],"metadata":{"k":[1,true,"s"]}}`,
		`{"doc_id":"\u00e9","vector":[1],"user_id":"alice","collection":"docs"}`,
		`{"doc_id":"d","vector":[1],"user_id":"bob"}`,
		`{"doc_id":"d","vector":[1e-50, 1.5E-40]}`,
		`[1,2]`,
		`{}`,
		``,
	} {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cfg := DecodeConfig{}
		fast, fastErr := decode(cfg, "rag.ingest.alice.docs", []byte(body), "", 11, true)
		slow, slowErr := decode(cfg, "rag.ingest.alice.docs", []byte(body), "", 11, false)
		if fmt.Sprint(fastErr) != fmt.Sprint(slowErr) || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("body %q:\nfast %+v, %v\nslow %+v, %v", body, fast, fastErr, slow, slowErr)
		}
	})
}

// TestSplitVectorTakesWellFormedVectors checks that the fast path is taken
// for the bodies it is for, so that the comparison above is not vacuous.
func TestSplitVectorTakesWellFormedVectors(t *testing.T) {
	for body, want := range map[string][]float32{
		`{"doc_id":"d","vector":[1,-2.5e-3,0,-0,3E+2]}`:                                      {1, -2.5e-3, 0, 0, 300},
		` { "doc_id" : "d" , "vector" : [ 1 , 2 ] , "text" : "t" } `:                         {1, 2},
		`{"vector":[7],"doc_id":"d","metadata":{"vector":[3]},"text":"a \"vector\": [9] b"}`: {7},
	} {
		vec, rest, ok := splitVector([]byte(body))
		if !ok || !reflect.DeepEqual(vec, want) {
			t.Errorf("splitVector(%s) = %v, %s, %v; want %v", body, vec, rest, ok, want)
		}
	}
}

// BenchmarkDecodeVector decodes an event carrying a 1024-dimensional vector
// and 900 bytes of text, with and without the fast path.
func BenchmarkDecodeVector(b *testing.B) {
	body := []byte(`{"doc_id":"doc-1","text":"` + strings.Repeat("lorem ipsum ", 75) + `","vector":[`)
	for i := range 1024 {
		if i > 0 {
			body = append(body, ',')
		}
		body = strconv.AppendFloat(body, float64(i%97)/97-0.5, 'g', -1, 32)
	}
	body = append(body, "]}"...)
	for _, fast := range []bool{true, false} {
		b.Run(fmt.Sprint("fast=", fast), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decode(DecodeConfig{}, "rag.ingest.alice.docs", body, "", 1, fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSplitVectorCapacity: the vector's capacity is sized by its own
// elements, not by the commas of the whole body (a memory attack).
func TestSplitVectorCapacity(t *testing.T) {
	body := `{"vector":[1],"doc_id":"d","text":"` + strings.Repeat(",", DefaultMaxEventBytes-64) + `"}`
	e, err := Decode(DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
	if err != nil || len(e.Vector) != 1 || cap(e.Vector) > 16 {
		t.Fatalf("len %d cap %d, %v", len(e.Vector), cap(e.Vector), err)
	}
}

package pipeline_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// benchText is about 900 characters of prose, the size of a typical
// inventory record.
var benchText = strings.Repeat("m5.xlarge instance in eu-west-1, tagged env=prod, owner=platform, running since 2024-03-01. ", 10)

// benchEvent returns a body with benchText, a few metadata fields and a
// version, with extra members (say a vector) spliced in before the end.
func benchEvent(extra string) []byte {
	return fmt.Appendf(nil, `{"op":"upsert","doc_id":"ec2/i-0abc123def456","text":%q,`+
		`"metadata":{"env":"prod","kind":"ec2","region":"eu-west-1","vcpus":4,"cost":0.192,"tags":["web","tier1","pci"],"monitored":true},`+
		`"version":1714000000123%s}`, benchText, extra)
}

// benchVector returns dims values shaped like a normalised embedding.
func benchVector(dims int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	vec := make([]float32, dims)
	for i := range vec {
		vec[i] = float32(r.NormFloat64() / math.Sqrt(float64(dims)))
	}
	return vec
}

// jsonVectorMember is `,"vector":[...]` with each value in its shortest
// float32 form, as encoders of float32 slices write it.
func jsonVectorMember(vec []float32) string {
	b := []byte(`,"vector":[`)
	for i, x := range vec {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return string(append(b, ']'))
}

// b64VectorMember is `,"vector_b64":"..."`: standard base64 of the
// little-endian float32 bytes.
func b64VectorMember(vec []float32) string {
	raw := make([]byte, 0, 4*len(vec))
	for _, x := range vec {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	return `,"vector_b64":"` + base64.StdEncoding.EncodeToString(raw) + `"`
}

// BenchmarkDecode decodes the three kinds of event a worker sees: text to
// embed, and a precomputed 1024-dimensional vector as a JSON array or as
// base64. Besides time it reports the process's CPU time per event, the
// figure that holds on a shared machine.
func BenchmarkDecode(b *testing.B) {
	vec := benchVector(1024)
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"text", benchEvent("")},
		{"vector", benchEvent(jsonVectorMember(vec))},
		{"vector_b64", benchEvent(b64VectorMember(vec))},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDecodeBodies(b, [][]byte{bc.body}) })
	}
	// Many different bodies, as a worker's drain sees them, so that neither
	// the caches nor the branch predictors learn one body.
	vectors, b64, wide := variedBodies(512)
	b.Run("vector_varied", func(b *testing.B) { benchDecodeBodies(b, vectors) })
	b.Run("vector_b64_varied", func(b *testing.B) { benchDecodeBodies(b, b64) })
	b.Run("vector_float64_varied", func(b *testing.B) { benchDecodeBodies(b, wide) })
}

// benchDecodeBodies decodes bodies in turn and reports the CPU time per body.
func benchDecodeBodies(b *testing.B, bodies [][]byte) {
	size := 0
	for _, body := range bodies {
		size += len(body)
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	done, n := cputimetest.Per(b, 1, "cpu-ns/op"), 0
	for b.Loop() {
		if _, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.tenant-42.documents", bodies[n%len(bodies)], "", 1); err != nil {
			b.Fatal(err)
		}
		n++
	}
	done()
}

// variedBodies returns n bodies with a JSON vector and n with a base64 one,
// made as ragpipe bench makes them: 1024 components in [-0.5, 0.5), the
// struct encoded by encoding/json (shortest float32 form), about 900
// characters of text; and n with the same vectors printed as float64s (17
// digits), as JavaScript and Python print float32s.
func variedBodies(n int) (vectors, b64, wide [][]byte) {
	type event struct {
		DocID     string    `json:"doc_id"`
		Text      string    `json:"text"`
		Vector    []float32 `json:"vector,omitempty"`
		VectorB64 string    `json:"vector_b64,omitempty"`
		Wide      []float64 `json:"vector_f64,omitempty"`
	}
	r := rand.New(rand.NewPCG(7, 11))
	for i := range n {
		vec := make([]float32, 1024)
		for j := range vec {
			vec[j] = r.Float32() - 0.5
		}
		raw := make([]byte, 0, 4*len(vec))
		for _, x := range vec {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
		}
		e := event{DocID: fmt.Sprintf("doc-%07d", i), Text: benchText, Vector: vec}
		v, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		e.Vector, e.VectorB64 = nil, base64.StdEncoding.EncodeToString(raw)
		w, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		e.VectorB64, e.Wide = "", make([]float64, len(vec))
		for j, x := range vec {
			e.Wide[j] = float64(x)
		}
		f, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		f = bytes.Replace(f, []byte(`"vector_f64"`), []byte(`"vector"`), 1)
		vectors, b64, wide = append(vectors, v), append(b64, w), append(wide, f)
	}
	return vectors, b64, wide
}

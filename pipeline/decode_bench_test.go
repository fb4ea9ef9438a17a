package pipeline_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			cpu := cpuTime(b)
			for b.Loop() {
				if _, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.tenant-42.documents", bc.body, "", 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

package bench

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// tenants are the user_ids the documents are spread over, round robin.
var tenants = []string{"alice", "bob", "carol", "dave", "erin"}

// vocabulary makes the generated texts: infrastructure notes, like the
// documents ragpipe is built for.
var vocabulary = strings.Fields(`instance volume bucket cluster region eu-west-1 us-east-1 prod staging
owner platform payments search tagged env tier web database replica backup snapshot encrypted
public private subnet gateway lambda queue topic retention policy cost center team alert latency
throughput migration schema index shard node memory disk cpu network firewall rule certificate
restore drill rotation quota budget invoice ticket incident runbook dashboard upgrade rollout`)

// sentences returns a text of at least n characters: sentences of 5 to 14
// words of the vocabulary.
func sentences(r *rand.Rand, n int) string {
	b := make([]byte, 0, n+128)
	for len(b) < n {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		for w := range 5 + r.IntN(10) {
			if w > 0 {
				b = append(b, ' ')
			}
			b = append(b, vocabulary[r.IntN(len(vocabulary))]...)
		}
		b = append(b, '.')
	}
	return string(b)
}

// doc is one generated document: one chunk, hence one point.
type doc struct {
	user, id, text string
	vector         []float32 // Dims random components in [-0.5, 0.5)
}

// makeDocs returns n documents of about textChars characters with vectors,
// the same for every run.
func makeDocs(n int) []doc {
	r := rand.New(rand.NewPCG(7, 11))
	docs := make([]doc, n)
	for i := range docs {
		v := make([]float32, Dims)
		for j := range v {
			v[j] = r.Float32() - 0.5
		}
		docs[i] = doc{user: tenants[i%len(tenants)], id: fmt.Sprintf("doc-%07d", i), text: sentences(r, textChars), vector: v}
	}
	return docs
}

// Event bodies: how a document's event carries it (CONTRACT §2).
const (
	bodyText      = "text"       // text only, embedded by the worker
	bodyVector    = "vector"     // with its vector as a JSON array of numbers
	bodyVectorB64 = "vector_b64" // with its vector as base64 of little-endian float32s
)

// ingestEvent is the JSON body of an ingest event (CONTRACT §2).
type ingestEvent struct {
	DocID     string    `json:"doc_id"`
	Text      string    `json:"text"`
	Vector    []float32 `json:"vector,omitempty"`
	VectorB64 string    `json:"vector_b64,omitempty"`
}

// body returns d's ingest event of the given kind (bodyText, bodyVector or
// bodyVectorB64).
func (d *doc) body(kind string) ([]byte, error) {
	e := ingestEvent{DocID: d.id, Text: d.text}
	switch kind {
	case bodyVector:
		e.Vector = d.vector
	case bodyVectorB64:
		raw := make([]byte, 4*len(d.vector))
		for i, x := range d.vector {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		e.VectorB64 = base64.StdEncoding.EncodeToString(raw)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", d.id, err)
	}
	return b, nil
}

// point returns d as ragpipe stores it (CONTRACT §3): its id, vector and
// payload, version 1, no metadata; with its keyword vector named sparse
// beside the unnamed dense one unless sparse is empty.
func (d *doc) point(sparse string) *qdrant.PointStruct {
	vectors := qdrant.NewVectorsDense(d.vector)
	if kw := pipeline.Keywords(d.text); sparse != "" && kw != nil {
		vectors = qdrant.NewVectorsMap(map[string]*qdrant.Vector{
			"":     qdrant.NewVectorDense(d.vector),
			sparse: qdrant.NewVectorSparse(kw.Indices, kw.Values),
		})
	}
	return &qdrant.PointStruct{
		Id:      qdrant.NewIDUUID(pipeline.PointID(d.user, d.id, 0)),
		Vectors: vectors,
		Payload: qdrant.NewValueMap(map[string]any{
			"user_id": d.user, "doc_id": d.id, "chunk_index": 0, "chunk_count": 1,
			"text": d.text, "metadata": map[string]any{}, "version": 1,
		}),
	}
}

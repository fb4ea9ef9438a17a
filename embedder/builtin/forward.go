package builtin

import (
	"math"
)

// scratch is one worker's buffers for a forward pass, sized for padRows.
type scratch struct {
	x, h, qkv, ctx, y, f []float32
	// attention: the scores of one head ([n, n rounded up to 16]), its keys
	// and values packed as panels.
	scores, keys, vals []float32
}

// keyCols is maxTokens rounded up to a multiple of panelCols.
const keyCols = (maxTokens + panelCols - 1) / panelCols * panelCols

func newScratch() *scratch {
	const n = padRows
	return &scratch{
		x:      make([]float32, n*modelDims),
		h:      make([]float32, n*modelDims),
		qkv:    make([]float32, n*3*modelDims),
		ctx:    make([]float32, n*modelDims),
		y:      make([]float32, n*modelDims),
		f:      make([]float32, n*1536),
		scores: make([]float32, n*keyCols),
		keys:   make([]float32, keyCols*128),
		vals:   make([]float32, keyCols*128),
	}
}

// embed writes the unit vector of text to out[:modelDims], reading up to
// windows consecutive windows of maxTokens pieces. For one window it
// follows the graph of the reference: token embeddings (doubled, as the
// graph adds the embedding to itself plus the timing signal), two
// transformer layers with pre-layer-norm attention and feed-forward blocks,
// mean pooling over the tokens, a tanh layer and L2 normalisation. Each
// further window runs through the layers on its own (positions from 0) and
// its tokens join the mean pooling.
func (m *model) embed(s *scratch, text string, out []float32, windows int) {
	ids := m.tok.encode(text)
	if len(ids) > windows*maxTokens {
		ids = ids[:windows*maxTokens]
	}
	pooled := out[:modelDims]
	clear(pooled)
	for w := 0; w < len(ids); w += maxTokens {
		win := ids[w:min(w+maxTokens, len(ids))]
		n := len(win)
		x := s.x[:n*256]
		for i, id := range win {
			e := m.emb[id*256 : id*256+256]
			t := m.timing[i*256 : i*256+256]
			xi := x[i*256 : i*256+256]
			for j := range xi {
				xi[j] = 2*e[j] + t[j]
			}
		}
		cur := x
		for li := range m.layers {
			cur = m.layers[li].forward(s, cur, n)
		}
		for i := range n {
			row := cur[i*modelDims : (i+1)*modelDims]
			for j, v := range row {
				pooled[j] += v
			}
		}
	}
	if len(ids) > 0 {
		inv := 1 / float32(len(ids))
		for j := range pooled {
			pooled[j] *= inv
		}
	}
	x := s.ctx[:modelDims] // room for a block of rows, which pooled lacks
	copy(x, pooled)
	t := s.h[:modelDims]
	matmul(t, x, modelDims, 1, m.tanhW, m.tanhB)
	var sum float32
	for j, v := range t {
		v = float32(math.Tanh(float64(v)))
		t[j] = v
		sum += v * v
	}
	scale := float32(1 / math.Sqrt(float64(max(sum, 1e-12))))
	for j, v := range t {
		out[j] = v * scale
	}
}

// forward runs the layer on x ([n, in]) and returns its output ([n, width]),
// which lives in one of s's buffers.
func (l *layer) forward(s *scratch, x []float32, n int) []float32 {
	in, width := l.in, l.width
	h := s.h[:n*in]
	layerNorm(h, x, in, l.ln1g, l.ln1b)
	qkv := s.qkv[:n*3*in]
	matmul(qkv, h, in, n, l.qkvW, l.qkvB)
	ctx := s.ctx[:n*in]
	l.attention(s, ctx, qkv, n)
	// y = ctx·Wout + b + residual, the residual projected to width when the
	// layer widens.
	y := s.y[:n*width]
	matmul(y, ctx, in, n, l.outW, l.outB)
	if l.resB != nil {
		r := s.f[:n*width]
		matmul(r, x, in, n, l.resW, l.resB)
		add(y, r)
	} else {
		add(y, x)
	}
	h = s.h[:n*width]
	layerNorm(h, y, width, l.ln2g, l.ln2b)
	f := s.f[:n*l.ffnWidth]
	matmul(f, h, width, n, l.ffn1W, l.ffn1B)
	for i, v := range f {
		f[i] = max(v, 0)
	}
	out := s.x[:n*width]
	matmul(out, f, l.ffnWidth, n, l.ffn2W, l.ffn2B)
	add(out, y)
	return out
}

// attention writes to ctx ([n, in]) the multi-head self-attention of the
// queries, keys and values in qkv ([n, 3·in]). No position is padding: the
// text is alone in its batch. Per head, the keys and values are packed as
// weight panels ([headSize, n] and [n, headSize], n rounded up to 16 with
// zeros) so that both products run on the matmul kernel.
func (l *layer) attention(s *scratch, ctx, qkv []float32, n int) {
	in, hs := l.in, l.headSize
	np := (n + panelCols - 1) / panelCols * panelCols
	scale := float32(1 / math.Sqrt(float64(hs)))
	keys := packed{k: hs, n: np, data: s.keys[:hs*np]}
	vals := packed{k: np, n: hs, data: s.vals[:np*hs]}
	p := s.scores[:n*np]
	for hd := range heads {
		q := qkv[hd*hs:]
		k := qkv[in+hd*hs:]
		v := qkv[2*in+hd*hs:]
		// keys: panel c holds, for each of the hs dimensions, keys c..c+15.
		clear(keys.data)
		for j := range n {
			kj := k[j*3*in : j*3*in+hs]
			panel := keys.data[j/panelCols*panelCols*hs:]
			for t, kv := range kj {
				panel[t*panelCols+j%panelCols] = kv
			}
		}
		// values: panel c holds, for each key, dimensions c..c+15.
		clear(vals.data)
		for j := range n {
			vj := v[j*3*in : j*3*in+hs]
			for c := 0; c < hs; c += panelCols {
				copy(vals.data[c*np+j*panelCols:c*np+(j+1)*panelCols], vj[c:c+panelCols])
			}
		}
		matmul(p, q, 3*in, n, keys, nil)
		for i := range n {
			row := p[i*np : (i+1)*np]
			mx := float32(math.Inf(-1))
			for j := range row[:n] {
				row[j] *= scale
				mx = max(mx, row[j])
			}
			var sum float32
			for j, x := range row[:n] {
				e := float32(math.Exp(float64(x - mx)))
				row[j] = e
				sum += e
			}
			inv := 1 / sum
			for j := range row[:n] {
				row[j] *= inv
			}
			clear(row[n:])
		}
		matmulStrided(ctx[hd*hs:], in, p, np, n, vals, nil)
	}
}

// layerNorm writes to dst each row of src (width w) normalised to zero mean
// and unit variance, then scaled by g and shifted by b.
func layerNorm(dst, src []float32, w int, g, b []float32) {
	for r := 0; r+w <= len(src); r += w {
		x, y := src[r:r+w], dst[r:r+w]
		var mean float32
		for _, v := range x {
			mean += v
		}
		mean /= float32(w)
		var variance float32
		for _, v := range x {
			d := v - mean
			variance += d * d
		}
		variance /= float32(w)
		inv := float32(1 / math.Sqrt(float64(variance+1e-6)))
		for j, v := range x {
			y[j] = g[j]*inv*(v-mean) + b[j]
		}
	}
}

// add adds src to dst element by element.
func add(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

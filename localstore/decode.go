package localstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"

	"github.com/ragpipe/ragpipe/pipeline"
)

// maxValueDepth bounds the nesting of decoded metadata values.
const maxValueDepth = 64

// errTorn marks a log tail that is not a complete, intact record.
var errTorn = errors.New("torn record")

// recReader reads framed records from a file.
type recReader struct {
	r    *bufio.Reader
	off  int64 // end of the last intact record
	size int64 // the file's size
	buf  []byte
}

func newRecReader(f *os.File) (*recReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &recReader{r: bufio.NewReaderSize(f, 1<<20), size: st.Size()}, nil
}

// next returns the next record's body (valid until the next call): io.EOF
// at the end of the file, errTorn when what follows is not an intact record,
// another error when the file cannot be read.
func (rr *recReader) next() ([]byte, error) {
	var h [recHeader]byte
	if _, err := io.ReadFull(rr.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	if n == 0 || n > rr.size-rr.off-recHeader {
		return nil, errTorn
	}
	if int64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	body := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	crc := crc32.Update(crc32.Checksum(h[0:4], castagnoli), castagnoli, body)
	if crc != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, errTorn
	}
	rr.off += recHeader + n
	return body, nil
}

// dec decodes a record body; the first failure sticks.
type dec struct {
	b   []byte
	err error
}

var errBadRecord = errors.New("malformed record")

func (d *dec) fail() {
	if d.err == nil {
		d.err = errBadRecord
	}
	d.b = nil
}

// done reports the first failure, or trailing bytes.
func (d *dec) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	return d.err
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items of at least minBytes each, refusing counts
// the rest of the record cannot hold.
func (d *dec) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/minBytes) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) take(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *dec) str() string { return string(d.take(d.count(1))) }

// pointBody decodes what record.pointBody encoded, with its keyword vector
// when withKw; the vector goes into p.vec, which must have the collection's
// dimensions.
func (d *dec) pointBody(p *pointIn, withKw bool) {
	copy(p.id[:], d.take(len(p.id)))
	p.chunk = int(d.varint())
	p.count = int(d.varint())
	p.text = d.str()
	p.hash = d.str()
	p.meta, _ = d.value(0).(map[string]any)
	if p.meta == nil {
		d.fail()
	}
	if n := d.take(4); n != nil && int(binary.LittleEndian.Uint32(n)) != len(p.vec) {
		d.fail()
	}
	raw := d.take(4 * len(p.vec))
	if d.err != nil {
		return
	}
	for i := range p.vec {
		p.vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	p.kw = nil
	if withKw {
		p.kw = d.keywords()
	}
}

// keywords decodes what record.keywords encoded; nil for an empty vector.
func (d *dec) keywords() *pipeline.SparseVector {
	n := d.count(5) // a delta of at least one byte and a value of four
	if n == 0 {
		return nil
	}
	kw := &pipeline.SparseVector{Indices: make([]uint32, n), Values: make([]float32, n)}
	var prev uint64
	for i := range n {
		prev += d.uvarint()
		if prev > math.MaxUint32 {
			d.fail()
		}
		kw.Indices[i] = uint32(prev)
	}
	raw := d.take(4 * n)
	if d.err != nil {
		return nil
	}
	for i := range kw.Values {
		kw.Values[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return kw
}

func (d *dec) value(depth int) any {
	if depth > maxValueDepth {
		d.fail()
		return nil
	}
	tag := d.take(1)
	if len(tag) == 0 {
		return nil
	}
	switch tag[0] {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return d.varint()
	case tagFloat:
		raw := d.take(8)
		if raw == nil {
			return nil
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(raw))
	case tagString:
		return d.str()
	case tagList:
		out := make([]any, d.count(1))
		for i := range out {
			out[i] = d.value(depth + 1)
		}
		return out
	case tagObject:
		n := d.count(2)
		out := make(map[string]any, n)
		for range n {
			k := d.str()
			out[k] = d.value(depth + 1)
		}
		return out
	default:
		d.fail()
		return nil
	}
}

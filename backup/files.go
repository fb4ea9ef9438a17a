package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// lineWriter writes one compressed JSON-lines file, hashing what reaches
// the disk.
type lineWriter struct {
	dir  string
	file File
	f    *os.File
	sum  hash.Hash
	buf  *bufio.Writer
	zw   *zstd.Encoder
	enc  *json.Encoder
}

// createLines creates dir/name, replacing any file of that name.
func createLines(dir, name string) (*lineWriter, error) {
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &lineWriter{dir: dir, file: File{Name: name}, f: f, sum: sha256.New()}
	w.buf = bufio.NewWriterSize(io.MultiWriter(f, w.sum), 1<<20)
	if w.zw, err = zstd.NewWriter(w.buf, zstd.WithEncoderConcurrency(1)); err != nil {
		f.Close()
		return nil, err
	}
	w.enc = json.NewEncoder(w.zw)
	w.enc.SetEscapeHTML(false)
	return w, nil
}

// add writes v as one line.
func (w *lineWriter) add(v any) error {
	w.file.Entries++
	return w.enc.Encode(v)
}

// close finishes the file, fsyncs it and returns its description.
func (w *lineWriter) close() (File, error) {
	err := errors.Join(w.zw.Close(), w.buf.Flush())
	if err == nil {
		err = w.f.Sync()
	}
	if st, serr := w.f.Stat(); err == nil && serr == nil {
		w.file.Bytes = st.Size()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.file.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	if err != nil {
		return File{}, fmt.Errorf("write %s: %w", w.file.Name, err)
	}
	return w.file, nil
}

// abort closes and removes an unfinished file.
func (w *lineWriter) abort() {
	w.zw.Close()
	w.f.Close()
	os.Remove(w.f.Name())
}

// verify checks the size and SHA-256 of dir/f.Name.
func verify(dir string, f File) error {
	file, err := os.Open(filepath.Join(dir, f.Name))
	if err != nil {
		return err
	}
	defer file.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, file)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); n != f.Bytes || got != f.SHA256 {
		return fmt.Errorf("%s: %d bytes with SHA-256 %s, the manifest says %d bytes with %s: %w",
			f.Name, n, got, f.Bytes, f.SHA256, ErrCorrupt)
	}
	return nil
}

// readLines calls fn with each line of dir/name decoded into a new T.
func readLines[T any](dir, name string, fn func(*T) error) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	dec := json.NewDecoder(zr)
	for line := 1; ; line++ {
		v := new(T)
		err := dec.Decode(v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s, line %d: %w: %w", name, line, ErrCorrupt, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}

// ErrCorrupt reports a backup file that does not read back as written.
var ErrCorrupt = errors.New("backup file damaged")

// writeJSON replaces path with v as indented JSON, atomically and durably.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// readJSON reads path into v; a missing file is os.ErrNotExist.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

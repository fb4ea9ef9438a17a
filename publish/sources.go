package publish

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Path publishes one command-line path: "-" reads Stdin as JSON lines; a
// file is one document whose doc_id is the path as given (slash-separated),
// or JSON lines; a directory publishes every regular file under it, but
// hidden ones, with doc_id the path relative to it. It returns at the first
// error that stops it (an unreadable path, ctx ended); bad lines and files
// that are not UTF-8 text are skipped and logged.
func (p *Publisher) Path(ctx context.Context, path string) error {
	if path == "-" {
		return p.lines(ctx, "stdin", p.cfg.Stdin)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return p.file(ctx, path, filepath.ToSlash(filepath.Clean(path)))
	}
	return filepath.WalkDir(path, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if strings.HasPrefix(d.Name(), ".") && file != path {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(path, file)
		if err != nil {
			return err
		}
		return p.file(ctx, file, filepath.ToSlash(rel))
	})
}

// file publishes a file as one document, or as JSON lines.
func (p *Publisher) file(ctx context.Context, file, docID string) error {
	if ext := filepath.Ext(file); p.cfg.JSONLines || ext == ".jsonl" || ext == ".ndjson" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		return p.lines(ctx, file, f)
	}
	if p.cfg.UserID == "" || p.cfg.Collection == "" {
		return errors.New("a user and a collection are required to publish files")
	}
	event := map[string]any{"op": p.cfg.Op, "doc_id": docID}
	if p.cfg.Op == pipeline.OpUpsert {
		text, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !utf8.Valid(text) {
			p.skip(file, "not UTF-8 text")
			return nil
		}
		event["text"] = string(text)
		if len(p.cfg.Metadata) > 0 {
			event["metadata"] = p.cfg.Metadata
		}
	}
	body, err := json.Marshal(event)
	if err != nil {
		return err
	}
	return p.Publish(ctx, file, p.cfg.UserID, p.cfg.Collection, body)
}

// lines publishes every non-blank line of r as one event. The subject comes
// from the line's user_id and collection, else from the configuration.
func (p *Publisher) lines(ctx context.Context, name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), p.cfg.MaxEventBytes+1)
	for n := 1; sc.Scan() && ctx.Err() == nil; n++ {
		line := sc.Bytes() // overwritten by the next Scan: Publish copies it
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var head struct {
			UserID     string `json:"user_id"`
			Collection string `json:"collection"`
		}
		where := fmt.Sprintf("%s:%d", name, n)
		if err := json.Unmarshal(line, &head); err != nil {
			p.skip(where, "not a JSON object: "+err.Error())
			continue
		}
		user, coll := cmp.Or(head.UserID, p.cfg.UserID), cmp.Or(head.Collection, p.cfg.Collection)
		if user == "" || coll == "" {
			p.skip(where, "no user_id or collection: give --user and --collection or put them in the line")
			continue
		}
		if err := p.Publish(ctx, where, user, coll, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w (a line longer than RAGPIPE_MAX_EVENT_BYTES?)", name, err)
	}
	return nil
}

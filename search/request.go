package search

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/ragpipe/ragpipe/pipeline"
)

// SearchRequest is the JSON body of a request on
// <prefix>.search.<user_id>.<collection> (CONTRACT §4).
type SearchRequest struct {
	// Query is the text to search for, embedded with the collection's
	// embedder. Required unless Vector is given.
	Query string `json:"query,omitempty"`
	// Vector is a query embedding used instead of Query; its length must
	// be the collection's dimensions.
	Vector []float32 `json:"vector,omitempty"`
	// TopK is the most hits to return, 1-100; 0 means the default, 10.
	TopK int `json:"top_k,omitempty"`
	// Filter holds metadata equality conditions, all of which must match:
	// key -> value, or key -> []any{values...} for any of these values.
	// Values are strings, numbers or booleans.
	Filter map[string]any `json:"filter,omitempty"`
	// ScoreThreshold drops hits scoring below it when not nil.
	ScoreThreshold *float32 `json:"score_threshold,omitempty"`
	// Mode is how hits are ranked: "hybrid" (dense and keyword results
	// fused), "dense" or "keyword". "" means hybrid where the collection has
	// keyword vectors, else dense. A search by Vector is dense only.
	Mode string `json:"mode,omitempty"`
}

// SearchReply is the JSON body of a successful search reply.
type SearchReply struct {
	Hits   []pipeline.Hit `json:"hits"`    // best first, all of the subject's tenant
	TookMS float64        `json:"took_ms"` // time the searcher spent, in milliseconds
}

// ListRequest is the JSON body of a request on
// <prefix>.list.<user_id>.<collection> (CONTRACT §5).
type ListRequest struct {
	// Limit is the most documents to return, 1-1000; 0 means the default, 100.
	Limit int `json:"limit,omitempty"`
	// Cursor is "" for the first page, else the NextCursor of the previous page.
	Cursor string `json:"cursor,omitempty"`
}

// ListReply is the JSON body of a successful list reply.
type ListReply struct {
	Docs       []pipeline.Doc `json:"docs"`              // one entry per document
	NextCursor string         `json:"next_cursor"`       // "" on the last page
	TookMS     float64        `json:"took_ms,omitempty"` // time the searcher spent, in milliseconds
}

// Status codes of error replies (CONTRACT §4), in the Nats-Service-Error-Code
// header.
const (
	CodeBadRequest  = 400 // the request is invalid; the message names the field
	CodeNotFound    = 404 // the collection does not exist
	CodeInternal    = 500 // anything else
	CodeUnavailable = 503 // the vector store (or embedder) is unavailable
)

// Error is an error reply: its Code and the message sent in the
// Nats-Service-Error header and the body {"error": "<message>"}.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

func badRequest(format string, args ...any) *Error {
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// errorBody is the body of an error reply.
type errorBody struct {
	Error string `json:"error"`
}

// searchBody is a search request as received: every field raw, so that each
// can be checked and named in the error. Unknown fields are ignored.
type searchBody struct {
	Query          json.RawMessage `json:"query"`
	Vector         json.RawMessage `json:"vector"`
	TopK           json.RawMessage `json:"top_k"`
	Filter         json.RawMessage `json:"filter"`
	ScoreThreshold json.RawMessage `json:"score_threshold"`
	Mode           json.RawMessage `json:"mode"`
	UserID         json.RawMessage `json:"user_id"`
	Collection     json.RawMessage `json:"collection"`
}

// listBody is a list request as received.
type listBody struct {
	Limit      json.RawMessage `json:"limit"`
	Cursor     json.RawMessage `json:"cursor"`
	UserID     json.RawMessage `json:"user_id"`
	Collection json.RawMessage `json:"collection"`
}

// searchParams is a validated search request; vector is nil when query is to
// be embedded. mode is ModeDense for a search by vector.
type searchParams struct {
	query     string
	vector    []float32
	topK      int
	filter    map[string][]any
	threshold *float32
	mode      pipeline.SearchMode
}

// decodeSearch validates a search request body for the subject's tenant and
// collection.
func decodeSearch(data []byte, userID, collection string) (searchParams, *Error) {
	var b searchBody
	if e := decodeBody(data, &b); e != nil {
		return searchParams{}, e
	}
	if e := sameTenant(b.UserID, b.Collection, userID, collection); e != nil {
		return searchParams{}, e
	}
	p := searchParams{topK: pipeline.DefaultTopK}
	if !absent(b.Query) {
		if err := json.Unmarshal(b.Query, &p.query); err != nil {
			return p, badRequest("query: must be a string, not %s", kind(b.Query))
		}
	}
	if !absent(b.Vector) {
		v, e := decodeVector(b.Vector)
		if e != nil {
			return p, e
		}
		p.vector = v
	}
	if p.vector == nil && strings.TrimSpace(p.query) == "" {
		return p, badRequest("query: required (a non-empty text), unless vector is given")
	}
	if !absent(b.Mode) {
		m, e := decodeMode(b.Mode)
		if e != nil {
			return p, e
		}
		p.mode = m
	}
	if p.vector != nil {
		if p.mode != pipeline.ModeAuto && p.mode != pipeline.ModeDense {
			return p, badRequest("mode %q: a search by vector is dense only; send query instead of vector, or mode dense", p.mode)
		}
		p.mode = pipeline.ModeDense
	}
	if !absent(b.TopK) {
		n, e := intField("top_k", b.TopK, 1, pipeline.MaxTopK)
		if e != nil {
			return p, e
		}
		p.topK = n
	}
	if !absent(b.Filter) {
		f, e := decodeFilter(b.Filter)
		if e != nil {
			return p, e
		}
		p.filter = f
	}
	if !absent(b.ScoreThreshold) {
		v, ok := number(b.ScoreThreshold)
		var f float64
		switch n := v.(type) {
		case int64:
			f = float64(n)
		case float64:
			f = n
		}
		if !ok || math.Abs(f) > math.MaxFloat32 {
			return p, badRequest("score_threshold: must be a number, not %s", kind(b.ScoreThreshold))
		}
		t := float32(f)
		p.threshold = &t
	}
	return p, nil
}

// decodeMode decodes a search mode: "hybrid", "dense", "keyword", or ""
// for the default.
func decodeMode(raw json.RawMessage) (pipeline.SearchMode, *Error) {
	var m string
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", badRequest("mode: must be a string, one of hybrid, dense or keyword, not %s", kind(raw))
	}
	switch mode := pipeline.SearchMode(m); mode {
	case pipeline.ModeAuto, pipeline.ModeHybrid, pipeline.ModeDense, pipeline.ModeKeyword:
		return mode, nil
	}
	return "", badRequest("mode %s: want hybrid, dense or keyword (default: hybrid where the collection has keyword vectors, else dense)", pipeline.ShortQuote(m))
}

// decodeList validates a list request body; it returns the limit and cursor.
func decodeList(data []byte, userID, collection string) (int, string, *Error) {
	var b listBody
	if e := decodeBody(data, &b); e != nil {
		return 0, "", e
	}
	if e := sameTenant(b.UserID, b.Collection, userID, collection); e != nil {
		return 0, "", e
	}
	limit, cursor := pipeline.DefaultLimit, ""
	if !absent(b.Limit) {
		n, e := intField("limit", b.Limit, 1, pipeline.MaxLimit)
		if e != nil {
			return 0, "", e
		}
		limit = n
	}
	if !absent(b.Cursor) {
		if err := json.Unmarshal(b.Cursor, &cursor); err != nil {
			return 0, "", badRequest("cursor: must be a string, not %s", kind(b.Cursor))
		}
	}
	return limit, cursor, nil
}

// decodeBody decodes a JSON object; an empty body counts as {}.
func decodeBody(data []byte, v any) *Error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		if !json.Valid(data) {
			return badRequest("the request body is not valid JSON")
		}
		return badRequest("the request body must be a JSON object, not %s", kind(data))
	}
	return nil
}

// sameTenant refuses a body naming another user or collection than the
// subject: the subject alone decides, and a body cannot widen it.
func sameTenant(rawUser, rawCollection json.RawMessage, userID, collection string) *Error {
	for _, f := range []struct {
		name    string
		raw     json.RawMessage
		subject string
	}{{"user_id", rawUser, userID}, {"collection", rawCollection, collection}} {
		if absent(f.raw) {
			continue
		}
		var s string
		if err := json.Unmarshal(f.raw, &s); err != nil {
			return badRequest("%s: must be a string, not %s", f.name, kind(f.raw))
		}
		if s != f.subject {
			return badRequest("%s: the body names %s but the subject is for %s; the subject alone decides",
				f.name, pipeline.ShortQuote(s), pipeline.ShortQuote(f.subject))
		}
	}
	return nil
}

// decodeVector decodes a query embedding: a non-empty array of finite numbers
// within float32 range.
func decodeVector(raw json.RawMessage) ([]float32, *Error) {
	var fs []float64
	if err := json.Unmarshal(raw, &fs); err != nil {
		return nil, badRequest("vector: must be an array of numbers")
	}
	if len(fs) == 0 {
		return nil, badRequest("vector: must not be empty")
	}
	v := make([]float32, len(fs))
	for i, f := range fs {
		if math.Abs(f) > math.MaxFloat32 {
			return nil, badRequest("vector: element %d is out of float32 range", i)
		}
		v[i] = float32(f)
	}
	return v, nil
}

// decodeFilter decodes {"key": value} or {"key": [values]} into the
// conditions of a Query.
func decodeFilter(raw json.RawMessage) (map[string][]any, *Error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badRequest("filter: must be an object of metadata key -> value or [values], not %s", kind(raw))
	}
	out := make(map[string][]any, len(m))
	for key, rv := range m {
		if problem := pipeline.ValidFilterKey(key); problem != "" {
			return nil, badRequest("filter: %s", problem)
		}
		if bytes.HasPrefix(bytes.TrimSpace(rv), []byte("[")) {
			var list []json.RawMessage
			if err := json.Unmarshal(rv, &list); err != nil {
				return nil, badRequest("filter %s: not a valid array", pipeline.ShortQuote(key))
			}
			if len(list) == 0 {
				return nil, badRequest("filter %s: an empty list matches nothing; give at least one value", pipeline.ShortQuote(key))
			}
			for i, e := range list {
				v, ok := scalar(e)
				if !ok {
					return nil, badRequest("filter %s: element %d is %s; want a string, number or boolean", pipeline.ShortQuote(key), i, kind(e))
				}
				out[key] = append(out[key], v)
			}
			continue
		}
		v, ok := scalar(rv)
		if !ok {
			return nil, badRequest("filter %s: value is %s; want a string, number, boolean or an array of them", pipeline.ShortQuote(key), kind(rv))
		}
		out[key] = []any{v}
	}
	return out, nil
}

// scalar decodes a string, number or boolean.
func scalar(raw json.RawMessage) (any, bool) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false
	}
	switch v := v.(type) {
	case string, bool:
		return v, true
	case float64:
		return number(raw)
	}
	return nil, false
}

// number decodes a JSON number as ingestion decodes metadata numbers: an
// integer literal that fits becomes int64, any other number float64.
func number(raw json.RawMessage) (any, bool) {
	lit := string(bytes.TrimSpace(raw))
	if lit == "" || !(lit[0] == '-' || lit[0] >= '0' && lit[0] <= '9') {
		return nil, false
	}
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// intField decodes an integer field that must lie in lo..hi.
func intField(name string, raw json.RawMessage, lo, hi int) (int, *Error) {
	v, ok := number(raw)
	i, isInt := v.(int64)
	if !ok || !isInt || i < int64(lo) || i > int64(hi) {
		return 0, badRequest("%s: must be an integer from %d to %d, got %s", name, lo, hi, short(raw))
	}
	return int(i), nil
}

// absent reports whether a field is missing or null.
func absent(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// kind names the JSON type of raw, for messages.
func kind(raw []byte) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// short shows a raw JSON value in a message, cut when long.
func short(raw []byte) string {
	t, more := pipeline.Cut(string(bytes.TrimSpace(raw)), 32)
	if more {
		return t + "…"
	}
	return t
}

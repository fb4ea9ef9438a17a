package search

import (
	"context"
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ragpipe/ragpipe/pipeline"
)

// MaxStatusDocs is the most doc_ids one status request may name.
const MaxStatusDocs = 1000

// StatusRequest is the JSON body of a request on
// <prefix>.status.<user_id>.<collection> (CONTRACT §5b).
type StatusRequest struct {
	// DocIDs are the documents asked about: 1-MaxStatusDocs doc_ids, each
	// 1-512 bytes of UTF-8.
	DocIDs []string `json:"doc_ids"`
}

// DocStatus is what a status reply says of one document.
type DocStatus struct {
	DocID      string `json:"doc_id"`
	Stored     bool   `json:"stored"`                // a search can find the document now
	Version    uint64 `json:"version,omitempty"`     // the stored version, when stored
	ChunkCount int    `json:"chunk_count,omitempty"` // its chunks, when stored
}

// StatusReply is the JSON body of a successful status reply: one entry per
// doc_id of the request, in request order.
type StatusReply struct {
	Docs []DocStatus `json:"docs"`
}

// statusBody is a status request as received.
type statusBody struct {
	DocIDs     json.RawMessage `json:"doc_ids"`
	UserID     json.RawMessage `json:"user_id"`
	Collection json.RawMessage `json:"collection"`
}

// decodeStatus validates a status request body for the subject's tenant and
// collection; it returns the doc_ids, each checked as ingestion checks a
// doc_id.
func decodeStatus(data []byte, userID, collection string) ([]string, *Error) {
	var b statusBody
	if e := decodeBody(data, &b); e != nil {
		return nil, e
	}
	if e := sameTenant(b.UserID, b.Collection, userID, collection); e != nil {
		return nil, e
	}
	if absent(b.DocIDs) {
		return nil, badRequest("doc_ids: required, an array of 1 to %d doc_ids", MaxStatusDocs)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b.DocIDs, &raws); err != nil {
		return nil, badRequest("doc_ids: must be an array of strings, not %s", kind(b.DocIDs))
	}
	if len(raws) == 0 || len(raws) > MaxStatusDocs {
		return nil, badRequest("doc_ids: must hold 1 to %d doc_ids, not %d", MaxStatusDocs, len(raws))
	}
	ids := make([]string, len(raws))
	for i, raw := range raws {
		if k := kind(raw); k != "a string" {
			return nil, badRequest("doc_ids: element %d is %s; want a string", i, k)
		}
		id, err := jsontext.AppendUnquote(nil, raw)
		switch {
		case err != nil:
			return nil, badRequest("doc_ids: element %d is not valid UTF-8", i)
		case len(id) == 0:
			return nil, badRequest("doc_ids: element %d is empty", i)
		case len(id) > pipeline.MaxDocIDBytes:
			return nil, badRequest("doc_ids: element %d is %d bytes, longer than %d", i, len(id), pipeline.MaxDocIDBytes)
		}
		ids[i] = string(id)
	}
	return ids, nil
}

// status answers a status request: what the store holds of each doc_id.
func (s *Service) status(ctx context.Context, j job, userID, collection string) (*StatusReply, *Error) {
	ids, e := decodeStatus(j.msg.Data, userID, collection)
	if e != nil {
		return nil, e
	}
	var stored map[string]pipeline.Doc
	e = s.onServing(ctx, j, collection, func(t target) *Error {
		var err error
		stored, err = s.cfg.Index.Status(ctx, t.Collection, userID, ids)
		if err != nil {
			return s.failure(j, t, "read the documents' status", err)
		}
		return nil
	})
	if e != nil {
		return nil, e
	}
	docs := make([]DocStatus, len(ids))
	for i, id := range ids {
		d, ok := stored[id]
		docs[i] = DocStatus{DocID: id, Stored: ok, Version: d.Version, ChunkCount: d.ChunkCount}
	}
	return &StatusReply{Docs: docs}, nil
}

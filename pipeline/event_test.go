package pipeline_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ragpipe/ragpipe/pipeline"
)

func TestDecodeAccepts(t *testing.T) {
	const subject = "rag.ingest.alice.docs"
	for _, tc := range []struct {
		name    string
		cfg     pipeline.DecodeConfig
		subject string // default subject when empty
		body    string
		header  string
		seq     uint64
		want    pipeline.Event
	}{
		{
			name: "defaults",
			body: `{"doc_id":"ec2/i-0abc123","text":"m5.xlarge in eu-west-1"}`,
			seq:  7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs",
				DocID: "ec2/i-0abc123", Text: "m5.xlarge in eu-west-1", Version: 7},
		},
		{
			name: "contract example",
			body: `{"op":"upsert","doc_id":"ec2/i-0abc123","text":"m5.xlarge in eu-west-1, tagged env=prod",
				"metadata":{"env":"prod","kind":"ec2","tags":["web","tier1"]},"version":42,"vector":null}`,
			seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs",
				DocID: "ec2/i-0abc123", Text: "m5.xlarge in eu-west-1, tagged env=prod", Version: 42,
				Metadata: map[string]any{"env": "prod", "kind": "ec2", "tags": []any{"web", "tier1"}}},
		},
		{
			name: "empty op means upsert",
			body: `{"op":"","doc_id":"d","text":"t"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "null op means upsert",
			body: `{"op":null,"doc_id":"d","text":"t"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "op written with escapes",
			body: `{"op":"\u0064elete","doc_id":"d"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpDelete, UserID: "alice", Collection: "docs", DocID: "d", Version: 1},
		},
		{
			name: "header version used",
			body: `{"doc_id":"d","text":"t"}`, header: "99", seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 99},
		},
		{
			name: "body version wins over header",
			body: `{"doc_id":"d","text":"t","version":5}`, header: "99", seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 5},
		},
		{
			name: "body version wins over a bad header",
			body: `{"doc_id":"d","text":"t","version":5}`, header: "not-a-number", seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 5},
		},
		{
			name: "null version means absent",
			body: `{"doc_id":"d","text":"t","version":null}`, seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 7},
		},
		{
			name: "largest version, 2^53-1",
			body: `{"doc_id":"d","text":"t","version":9007199254740991}`, seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1<<53 - 1},
		},
		{
			name: "largest version written as a float",
			body: `{"doc_id":"d","text":"t","version":9.007199254740991e15}`, seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1<<53 - 1},
		},
		{
			name: "largest header version, 2^53-1",
			body: `{"doc_id":"d","text":"t"}`, header: "9007199254740991", seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1<<53 - 1},
		},
		{
			name: "stream sequence beyond 2^53-1",
			body: `{"doc_id":"d","text":"t"}`, seq: 1 << 60,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1 << 60},
		},
		{
			name: "integral version written as a float",
			body: `{"doc_id":"d","text":"t","version":42.0}`, seq: 7,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 42},
		},
		{
			name: "delete without text",
			body: `{"op":"delete","doc_id":"d"}`, seq: 3,
			want: pipeline.Event{Op: pipeline.OpDelete, UserID: "alice", Collection: "docs", DocID: "d", Version: 3},
		},
		{
			name: "delete ignores text, vector and metadata",
			body: `{"op":"delete","doc_id":"d","text":5,"vector":[1e99],"metadata":{"a":{"b":1}}}`, seq: 3,
			want: pipeline.Event{Op: pipeline.OpDelete, UserID: "alice", Collection: "docs", DocID: "d", Version: 3},
		},
		{
			name: "metadata types",
			body: `{"doc_id":"d","text":"t","metadata":{
				"s":"x","i":42,"neg":-7,"f":1.5,"exp":1e3,"big":9223372036854775808,"b":true,"no":false,
				"list":["a",1,2.5,true],"empty":[],"ints":[1,2,3], "spaced" : [ "x" , -0.5 ] ,
				"esc\u00e9":"line\nbreak","bad` + "\xff" + `utf8":"x` + "\xfe" + `y","dup":1,"dup":2}}`,
			seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1,
				Metadata: map[string]any{
					"s": "x", "i": int64(42), "neg": int64(-7), "f": 1.5, "exp": float64(1000),
					"big": float64(9223372036854775808), "b": true, "no": false,
					"list": []any{"a", int64(1), 2.5, true}, "empty": []any{}, "ints": []any{int64(1), int64(2), int64(3)},
					"spaced": []any{"x", -0.5}, "esc\u00e9": "line\nbreak", "bad\ufffdutf8": "x\ufffdy", "dup": int64(2),
				}},
		},
		{
			name: "empty metadata is none",
			body: `{"doc_id":"d","text":"t","metadata":{}}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "null metadata is none",
			body: `{"doc_id":"d","text":"t","metadata":null}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "vector without text",
			body: `{"doc_id":"d","vector":[0.5, -1, 2e-3, 0, 1e-50, 3.4028234e38]}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Version: 1,
				Vector: []float32{0.5, -1, 2e-3, 0, 0, 3.4028234e38}},
		},
		{
			name: "vector with blank text",
			body: `{"doc_id":"d","text":"  ","vector":[1]}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "  ", Version: 1,
				Vector: []float32{1}},
		},
		{
			name: "unknown fields are ignored",
			body: `{"doc_id":"d","text":"t","future":{"x":[1,{"y":null}]},"priority":3}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "matching user_id and collection in the body",
			body: `{"doc_id":"d","text":"t","user_id":"alice","collection":"docs"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "escaped strings",
			body: `{"doc_id":"a\"b\u00e9\ud83d\ude00","text":"line\nnext \u65e5"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "a\"bé😀", Text: "line\nnext 日", Version: 1},
		},
		{
			name: "doc_id of 512 bytes",
			body: `{"doc_id":"` + strings.Repeat("é", 256) + `","text":"t"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: strings.Repeat("é", 256), Text: "t", Version: 1},
		},
		{
			name:    "custom prefix",
			cfg:     pipeline.DecodeConfig{Prefix: "acme.rag"},
			subject: "acme.rag.ingest.Bob_2.kb-eu",
			body:    `{"doc_id":"d","text":"t"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "Bob_2", Collection: "kb-eu", DocID: "d", Text: "t", Version: 1},
		},
		{
			name: "body exactly at the limit",
			cfg:  pipeline.DecodeConfig{MaxEventBytes: len(`{"doc_id":"d","text":"t"}`)},
			body: `{"doc_id":"d","text":"t"}`, seq: 1,
			want: pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "t", Version: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subj := tc.subject
			if subj == "" {
				subj = subject
			}
			got, err := pipeline.Decode(tc.cfg, subj, []byte(tc.body), tc.header, tc.seq)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode =\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	const subject = "rag.ingest.alice.docs"
	type want struct {
		reason            string // a substring of the reason
		user, coll        string
		version           uint64
		subjectIsInvalid  bool // user and coll must be empty
		versionIsNotKnown bool // version must be 0
	}
	for _, tc := range []struct {
		name    string
		cfg     pipeline.DecodeConfig
		subject string // default subject when empty
		body    string
		header  string
		seq     uint64
		want    want
	}{
		// The body as a whole.
		{name: "not JSON", body: `{"doc_id":`, seq: 7, want: want{reason: "not valid JSON", version: 7}},
		{name: "not JSON, header version", body: `doc_id=1`, header: "5", seq: 7, want: want{reason: "not valid JSON", version: 5}},
		{name: "not JSON, bad header version", body: `doc_id=1`, header: "x", seq: 7, want: want{reason: "not valid JSON", version: 7}},
		{name: "trailing garbage", body: `{"doc_id":"d","text":"t"} x`, seq: 7, want: want{reason: "not valid JSON", version: 7}},
		{name: "empty body", body: ``, seq: 7, want: want{reason: "empty", version: 7}},
		{name: "array body", body: `[{"doc_id":"d","text":"t"}]`, seq: 7, want: want{reason: "JSON array, not an object", version: 7}},
		{name: "string body", body: `"hello"`, seq: 7, want: want{reason: "JSON string, not an object", version: 7}},
		{name: "null body", body: `null`, seq: 7, want: want{reason: "JSON null, not an object", version: 7}},
		{name: "oversize body", cfg: pipeline.DecodeConfig{MaxEventBytes: 20}, body: `{"doc_id":"d","text":"tt"}`, seq: 7,
			want: want{reason: "body is 26 bytes, larger than the limit of 20", version: 7}},
		{name: "oversize body, default limit", body: `{"doc_id":"d","text":"` + strings.Repeat("x", 1<<20) + `"}`, seq: 7,
			want: want{reason: "larger than the limit of 1048576", version: 7}},
		{name: "oversize body is not parsed", cfg: pipeline.DecodeConfig{MaxEventBytes: 20}, body: `{"doc_id":"d","version":3,"text":"t"}`,
			header: "4", seq: 7, want: want{reason: "larger than the limit", version: 4}},

		// Subject.
		{name: "missing collection token", subject: "rag.ingest.alice", body: `{"doc_id":"d","text":"t"}`, seq: 7,
			want: want{reason: "no <collection> token", subjectIsInvalid: true, version: 7}},
		{name: "extra token", subject: "rag.ingest.alice.docs.x", body: `{"doc_id":"d","text":"t","version":3}`, seq: 7,
			want: want{reason: "tokens after <collection>", subjectIsInvalid: true, version: 3}},
		{name: "invalid user_id token", subject: "rag.ingest.al!ce.docs", body: `{"doc_id":"d","text":"t"}`, seq: 7,
			want: want{reason: `user_id "al!ce" in the subject`, subjectIsInvalid: true, version: 7}},
		{name: "user_id token too long", subject: "rag.ingest." + strings.Repeat("u", 129) + ".docs", body: `{"doc_id":"d","text":"t"}`, seq: 7,
			want: want{reason: "user_id", subjectIsInvalid: true, version: 7}},
		{name: "invalid collection token", subject: "rag.ingest.alice.Docs", body: `{"doc_id":"d","text":"t"}`, header: "4", seq: 7,
			want: want{reason: `collection "Docs" in the subject`, subjectIsInvalid: true, version: 4}},
		{name: "wrong kind", subject: "rag.search.alice.docs", body: `{"doc_id":"d","text":"t"}`, seq: 7,
			want: want{reason: `does not start with "rag.ingest."`, subjectIsInvalid: true, version: 7}},
		{name: "wrong prefix", cfg: pipeline.DecodeConfig{Prefix: "acme.rag"}, subject: subject, body: `{"doc_id":"d","text":"t"}`, seq: 7,
			want: want{reason: `does not start with "acme.rag.ingest."`, subjectIsInvalid: true, version: 7}},
		{name: "invalid subject and bad body", subject: "rag.ingest.alice", body: `nope`, seq: 7,
			want: want{reason: "no <collection> token", subjectIsInvalid: true, version: 7}},
		{name: "invalid subject, no version", subject: "rag.ingest.alice", body: `{}`,
			want: want{reason: "no <collection> token", subjectIsInvalid: true, versionIsNotKnown: true}},

		// doc_id.
		{name: "missing doc_id", body: `{"text":"t"}`, seq: 7, want: want{reason: "doc_id is required", version: 7}},
		{name: "null doc_id", body: `{"doc_id":null,"text":"t"}`, seq: 7, want: want{reason: "doc_id is required", version: 7}},
		{name: "empty doc_id", body: `{"doc_id":"","text":"t"}`, seq: 7, want: want{reason: "doc_id is empty", version: 7}},
		{name: "numeric doc_id", body: `{"doc_id":12,"text":"t"}`, seq: 7, want: want{reason: "doc_id must be a string, not a JSON number", version: 7}},
		{name: "doc_id of 513 bytes", body: `{"doc_id":"` + strings.Repeat("x", 513) + `","text":"t","version":9}`, seq: 7,
			want: want{reason: "doc_id is 513 bytes, longer than 512", version: 9}},
		{name: "doc_id over 512 bytes through escapes", body: `{"doc_id":"` + strings.Repeat(`\u00e9`, 257) + `","text":"t"}`, seq: 7,
			want: want{reason: "doc_id is 514 bytes, longer than 512", version: 7}},
		{name: "invalid UTF-8 doc_id", body: "{\"doc_id\":\"ab\xff\xfe\",\"text\":\"t\"}", seq: 7,
			want: want{reason: "doc_id is not valid UTF-8", version: 7}},
		{name: "lone surrogate doc_id", body: `{"doc_id":"ab\ud800","text":"t"}`, seq: 7,
			want: want{reason: "doc_id is not valid UTF-8", version: 7}},
		{name: "lone low surrogate doc_id", body: `{"doc_id":"\udc00x","text":"t"}`, seq: 7,
			want: want{reason: "doc_id is not valid UTF-8", version: 7}},
		{name: "reversed surrogates doc_id", body: `{"doc_id":"\ude00\ud83d","text":"t"}`, seq: 7,
			want: want{reason: "doc_id is not valid UTF-8", version: 7}},

		// text.
		{name: "missing text", body: `{"doc_id":"d"}`, seq: 7, want: want{reason: "text is required", version: 7}},
		{name: "null text", body: `{"doc_id":"d","text":null}`, seq: 7, want: want{reason: "text is required", version: 7}},
		{name: "empty text", body: `{"doc_id":"d","text":""}`, seq: 7, want: want{reason: "text is required", version: 7}},
		{name: "whitespace text", body: `{"doc_id":"d","text":" \n\t\u00a0\u3000"}`, seq: 7,
			want: want{reason: "text is only whitespace", version: 7}},
		{name: "numeric text", body: `{"doc_id":"d","text":5,"version":8}`, seq: 7,
			want: want{reason: "text must be a string, not a JSON number", version: 8}},

		// op.
		{name: "unknown op", body: `{"op":"merge","doc_id":"d","text":"t"}`, seq: 7, want: want{reason: `op "merge"`, version: 7}},
		{name: "op in capitals", body: `{"op":"DELETE","doc_id":"d"}`, seq: 7, want: want{reason: `op "DELETE"`, version: 7}},
		{name: "numeric op", body: `{"op":1,"doc_id":"d","text":"t"}`, seq: 7, want: want{reason: "op must be a string", version: 7}},

		// version.
		{name: "version 0", body: `{"doc_id":"d","text":"t","version":0}`, seq: 7, want: want{reason: "version 0 is not a positive integer", version: 7}},
		{name: "version -1", body: `{"doc_id":"d","text":"t","version":-1}`, header: "3", seq: 7,
			want: want{reason: "version -1 is not a positive integer", version: 3}},
		{name: "version 1.5", body: `{"doc_id":"d","text":"t","version":1.5}`, seq: 7, want: want{reason: "version 1.5 is not", version: 7}},
		{name: "version 2^53", body: `{"doc_id":"d","text":"t","version":9007199254740992}`, header: "3", seq: 7,
			want: want{reason: "version 9007199254740992 is above 2^53-1 (9007199254740991): versions must be exact in Qdrant's float64", version: 3}},
		{name: "version 2^53 written as a float", body: `{"doc_id":"d","text":"t","version":9.007199254740992e15}`, seq: 7,
			want: want{reason: "version 9.007199254740992e15 is above 2^53-1", version: 7}},
		{name: "version 2^63", body: `{"doc_id":"d","text":"t","version":9223372036854775808}`, seq: 7,
			want: want{reason: "version 9223372036854775808 is above 2^53-1", version: 7}},
		{name: "version beyond uint64", body: `{"doc_id":"d","text":"t","version":18446744073709551616}`, seq: 7,
			want: want{reason: "version 18446744073709551616 is above 2^53-1", version: 7}},
		{name: "version beyond float64", body: `{"doc_id":"d","text":"t","version":1e400}`, seq: 7, want: want{reason: "version 1e400 is above 2^53-1", version: 7}},
		{name: "version 0.5", body: `{"doc_id":"d","text":"t","version":0.5}`, seq: 7, want: want{reason: "version 0.5 is not a positive integer", version: 7}},
		{name: "version as a string", body: `{"doc_id":"d","text":"t","version":"42"}`, seq: 7,
			want: want{reason: "version must be a positive integer, not a JSON string", version: 7}},
		{name: "header version not a number", body: `{"doc_id":"d","text":"t"}`, header: "abc", seq: 7,
			want: want{reason: `Ragpipe-Version header "abc"`, version: 7}},
		{name: "header version 0", body: `{"doc_id":"d","text":"t"}`, header: "0", seq: 7,
			want: want{reason: `Ragpipe-Version header "0"`, version: 7}},
		{name: "header version -3", body: `{"doc_id":"d","text":"t"}`, header: "-3", seq: 7,
			want: want{reason: `Ragpipe-Version header "-3"`, version: 7}},
		{name: "header version 2^53", body: `{"doc_id":"d","text":"t"}`, header: "9007199254740992", seq: 7,
			want: want{reason: `Ragpipe-Version header "9007199254740992" is above 2^53-1 (9007199254740991): versions must be exact`, version: 7}},
		{name: "header version too big", body: `{"doc_id":"d","text":"t"}`, header: "9223372036854775808", seq: 7,
			want: want{reason: `Ragpipe-Version header "9223372036854775808" is above 2^53-1`, version: 7}},
		{name: "header version 1.5", body: `{"doc_id":"d","text":"t"}`, header: "1.5", seq: 7,
			want: want{reason: `Ragpipe-Version header "1.5" is not a positive integer`, version: 7}},
		{name: "bad header version, good body version", body: `{"doc_id":"d","text":"t","version":0}`, header: "9007199254740992", seq: 7,
			want: want{reason: "version 0 is not a positive integer", version: 7}},
		{name: "no version at all", body: `{"doc_id":"d","text":"t"}`,
			want: want{reason: "no version", versionIsNotKnown: true}},

		// user_id and collection in the body.
		{name: "user_id mismatch", body: `{"doc_id":"d","text":"t","user_id":"bob"}`, seq: 7,
			want: want{reason: `user_id "bob" in the body does not match the subject's "alice"`, version: 7}},
		{name: "empty user_id", body: `{"doc_id":"d","text":"t","user_id":""}`, seq: 7,
			want: want{reason: `user_id "" in the body does not match`, version: 7}},
		{name: "collection mismatch", body: `{"doc_id":"d","text":"t","collection":"other"}`, seq: 7,
			want: want{reason: `collection "other" in the body does not match the subject's "docs"`, version: 7}},
		{name: "numeric user_id", body: `{"doc_id":"d","text":"t","user_id":1}`, seq: 7,
			want: want{reason: "user_id in the body must be a string", version: 7}},
		{name: "mismatch on delete", body: `{"op":"delete","doc_id":"d","collection":"other"}`, seq: 7,
			want: want{reason: `collection "other" in the body`, version: 7}},

		// metadata.
		{name: "nested metadata", body: `{"doc_id":"d","text":"t","metadata":{"ok":1,"owner":{"team":"x"}}}`, seq: 7,
			want: want{reason: `metadata key "owner": nested objects`, version: 7}},
		{name: "null metadata value", body: `{"doc_id":"d","text":"t","metadata":{"owner":null}}`, seq: 7,
			want: want{reason: `metadata key "owner": null`, version: 7}},
		{name: "null in metadata array", body: `{"doc_id":"d","text":"t","metadata":{"tags":["a",null]}}`, seq: 7,
			want: want{reason: `metadata key "tags": element 1 is null`, version: 7}},
		{name: "array of arrays in metadata", body: `{"doc_id":"d","text":"t","metadata":{"m":[[1,2]]}}`, seq: 7,
			want: want{reason: `metadata key "m": element 0 is an array`, version: 7}},
		{name: "object in metadata array", body: `{"doc_id":"d","text":"t","metadata":{"m":[1,{}]}}`, seq: 7,
			want: want{reason: `metadata key "m": element 1 is an object`, version: 7}},
		{name: "metadata number overflows", body: `{"doc_id":"d","text":"t","metadata":{"n":1e400}}`, seq: 7,
			want: want{reason: `metadata key "n": number 1e400 is out of range`, version: 7}},
		{name: "metadata number overflows in an array", body: `{"doc_id":"d","text":"t","metadata":{"n":[1,-1e400]}}`, seq: 7,
			want: want{reason: `metadata key "n": element 1: number -1e400 is out of range`, version: 7}},
		{name: "metadata array", body: `{"doc_id":"d","text":"t","metadata":["a"]}`, seq: 7,
			want: want{reason: "metadata must be a JSON object, not a JSON array", version: 7}},
		{name: "metadata string", body: `{"doc_id":"d","text":"t","metadata":"env=prod"}`, seq: 7,
			want: want{reason: "metadata must be a JSON object, not a JSON string", version: 7}},
		{name: "several bad metadata keys name the first", body: `{"doc_id":"d","text":"t","metadata":{"a":1,"z":null,"b":{},"c":null}}`, seq: 7,
			want: want{reason: `metadata key "z"`, version: 7}},
		{name: "metadata with escapes and spaces", body: "{\"doc_id\":\"d\",\"text\":\"t\",\"metadata\": { \"a\\u0062\" : [ 1 , {} ] } }", seq: 7,
			want: want{reason: `metadata key "ab": element 1 is an object`, version: 7}},

		// vector.
		{name: "vector entry overflows float32", body: `{"doc_id":"d","vector":[0.5,1e39]}`, seq: 7,
			want: want{reason: `vector[1] = 1e39 is not a finite 32-bit float`, version: 7}},
		{name: "vector entry overflows float64", body: `{"doc_id":"d","text":"t","vector":[-1e400]}`, seq: 7,
			want: want{reason: `vector[0] = -1e400 is`, version: 7}},
		{name: "empty vector", body: `{"doc_id":"d","text":"t","vector":[]}`, seq: 7, want: want{reason: "vector is empty", version: 7}},
		{name: "empty vector with spaces", body: `{"doc_id":"d","text":"t","vector":[ ]}`, seq: 7, want: want{reason: "vector is empty", version: 7}},
		{name: "string in vector", body: `{"doc_id":"d","vector":[1, "2"]}`, seq: 7,
			want: want{reason: "vector[1] must be a number, not a JSON string", version: 7}},
		{name: "null in vector", body: `{"doc_id":"d","vector":[1, null]}`, seq: 7,
			want: want{reason: "vector[1] must be a number, not a JSON null", version: 7}},
		{name: "nested vector", body: `{"doc_id":"d","vector":[[1]]}`, seq: 7,
			want: want{reason: "vector[0] must be a number, not a JSON array", version: 7}},
		{name: "vector not an array", body: `{"doc_id":"d","vector":{"0":1}}`, seq: 7,
			want: want{reason: "vector must be an array of numbers, not a JSON object", version: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subj := tc.subject
			if subj == "" {
				subj = subject
			}
			e, err := pipeline.Decode(tc.cfg, subj, []byte(tc.body), tc.header, tc.seq)
			if err == nil {
				t.Fatalf("Decode accepted it: %#v", e)
			}
			if !errors.Is(err, pipeline.ErrPermanent) || !pipeline.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			r, ok := errors.AsType[*pipeline.Rejection](err)
			if !ok {
				t.Fatalf("error %T %v is not a *Rejection", err, err)
			}
			if r.Reason == "" || !strings.Contains(r.Reason, tc.want.reason) {
				t.Errorf("Reason = %q, want it to contain %q", r.Reason, tc.want.reason)
			}
			if !strings.Contains(err.Error(), r.Reason) {
				t.Errorf("Error() = %q does not contain the reason %q", err.Error(), r.Reason)
			}
			wantUser, wantColl := "alice", "docs"
			if tc.want.subjectIsInvalid {
				wantUser, wantColl = "", ""
			}
			if r.UserID != wantUser || r.Collection != wantColl {
				t.Errorf("UserID, Collection = %q, %q, want %q, %q", r.UserID, r.Collection, wantUser, wantColl)
			}
			wantVersion := tc.want.version
			if tc.want.versionIsNotKnown {
				wantVersion = 0
			} else if wantVersion == 0 {
				t.Fatal("test case without a version")
			}
			if r.Version != wantVersion {
				t.Errorf("Version = %d, want %d", r.Version, wantVersion)
			}
			if len(r.Reason) > 300 {
				t.Errorf("Reason is %d bytes long: %q", len(r.Reason), r.Reason)
			}
		})
	}
}

// TestDecodeReasonIsShort checks that huge values are not copied whole into
// the reason, which travels in a NATS header.
func TestDecodeReasonIsShort(t *testing.T) {
	body := `{"op":"` + strings.Repeat("x", 10000) + `","doc_id":"d"}`
	_, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
	r, ok := errors.AsType[*pipeline.Rejection](err)
	if !ok {
		t.Fatalf("Decode error = %v, want a *Rejection", err)
	}
	if len(r.Reason) > 200 {
		t.Errorf("Reason is %d bytes long", len(r.Reason))
	}
}

// FuzzDecode checks that Decode never panics, that every failure is a
// Rejection with a reason, and that an accepted event obeys CONTRACT §2, its
// metadata and vector agreeing with a plain encoding/json decoding.
func FuzzDecode(f *testing.F) {
	f.Add("rag.ingest.alice.docs", `{"doc_id":"d","text":"t"}`, "")
	f.Add("rag.ingest.alice.docs", `{"op":"delete","doc_id":"d","version":3}`, "4")
	f.Add("rag.ingest.alice.docs", `{"doc_id":"a\ud83d\ude00","text":"t","metadata":{"a":[1,2.5,"x",true],"b":{"c":1}}}`, "")
	f.Add("rag.ingest.alice.docs", `{"doc_id":"d","vector":[1, -2e-3, 1e39],"metadata":{"k":"v\n"}}`, "7")
	f.Add("rag.ingest.alice.docs", `{"doc_id":"d","vector_b64":"AACAPwAAAMA=","Vector":null}`, "")
	f.Add("rag.ingest.alice.docs", `{"doc_id":"d","vector_b64":"AAC\/fw==","text":"t","version":9007199254740991}`, "")
	f.Add("rag.ingest.alice", `[1,2]`, "x")
	f.Add("rag.ingest.alice.docs", `{"doc_id":"d","text":" ","user_id":"alice","version":1.0}`, "")
	f.Fuzz(func(t *testing.T, subject, body, header string) {
		e, err := pipeline.Decode(pipeline.DecodeConfig{}, subject, []byte(body), header, 11)
		if err != nil {
			r, ok := errors.AsType[*pipeline.Rejection](err)
			if !ok || r.Reason == "" || !pipeline.IsPermanent(err) {
				t.Fatalf("Decode error %#v is not a Rejection with a reason", err)
			}
			return
		}
		user, coll, ok := pipeline.ParseSubject("rag", "ingest", subject)
		if !ok || e.UserID != user || e.Collection != coll {
			t.Fatalf("accepted subject %q as %q, %q", subject, e.UserID, e.Collection)
		}
		if e.DocID == "" || len(e.DocID) > 512 || !utf8.ValidString(e.DocID) {
			t.Fatalf("accepted doc_id %q", e.DocID)
		}
		if e.Version < 1 || e.Version > pipeline.MaxVersion && e.Version != 11 {
			t.Fatalf("accepted version %d", e.Version)
		}
		if e.Op == pipeline.OpDelete {
			if e.Text != "" || e.Vector != nil || e.Metadata != nil {
				t.Fatalf("delete with content: %#v", e)
			}
			return
		}
		if e.Op != pipeline.OpUpsert || (e.Vector == nil && strings.TrimSpace(e.Text) == "") {
			t.Fatalf("accepted %#v", e)
		}
		var ref struct {
			Metadata  json.RawMessage
			Vector    []float64
			VectorB64 string `json:"vector_b64"`
		}
		if err := json.Unmarshal([]byte(body), &ref); err != nil {
			t.Fatalf("accepted a body that encoding/json refuses: %v", err)
		}
		if want := referenceMetadata(t, ref.Metadata); !reflect.DeepEqual(e.Metadata, want) {
			t.Fatalf("metadata = %#v, encoding/json gives %#v", e.Metadata, want)
		}
		if ref.VectorB64 != "" {
			raw, err := base64.StdEncoding.DecodeString(ref.VectorB64)
			if err != nil || len(raw)%4 != 0 || ref.Vector != nil {
				t.Fatalf("accepted vector_b64 %q, %v, with vector %v", ref.VectorB64, err, ref.Vector)
			}
			for i := 0; i < len(raw); i += 4 {
				ref.Vector = append(ref.Vector, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))))
			}
		}
		if len(e.Vector) != len(ref.Vector) {
			t.Fatalf("vector = %v, encoding/json gives %v", e.Vector, ref.Vector)
		}
		for i, x := range ref.Vector {
			// Rounding once to float32 and twice (via float64) may differ by an ulp.
			if diff := math.Abs(float64(e.Vector[i]) - x); diff > max(math.Abs(x)*1e-6, 2e-45) {
				t.Fatalf("vector[%d] = %v, encoding/json gives %v", i, e.Vector[i], x)
			}
		}
	})
}

// referenceMetadata decodes metadata with encoding/json, the slow way.
func referenceMetadata(t *testing.T, raw json.RawMessage) map[string]any {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("accepted metadata that encoding/json refuses: %v", err)
	}
	if len(m) == 0 {
		return nil
	}
	conv := func(v any) any {
		n, ok := v.(json.Number)
		if !ok {
			return v
		}
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(n), 64)
		return f
	}
	for k, v := range m {
		if list, ok := v.([]any); ok {
			for i := range list {
				list[i] = conv(list[i])
			}
		}
		m[k] = conv(v)
	}
	return m
}

// typicalEvent is a body of about 1 KB, like an inventory record.
func typicalEvent() []byte {
	text := strings.Repeat("m5.xlarge instance in eu-west-1, tagged env=prod, owner=platform, running since 2024-03-01. ", 8)
	return fmt.Appendf(nil, `{"op":"upsert","doc_id":"ec2/i-0abc123def456","text":%q,`+
		`"metadata":{"env":"prod","kind":"ec2","region":"eu-west-1","vcpus":4,"cost":0.192,"tags":["web","tier1","pci"],"monitored":true},`+
		`"version":1714000000123}`, text)
}

func TestTypicalEvent(t *testing.T) {
	body := typicalEvent()
	if n := len(body); n < 900 || n > 1200 {
		t.Errorf("typical event is %d bytes, want about 1 KB", n)
	}
	e, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.tenant-42.documents", body, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != 1714000000123 || e.Metadata["vcpus"] != int64(4) || e.Metadata["cost"] != 0.192 {
		t.Errorf("unexpected event %+v", e)
	}
}

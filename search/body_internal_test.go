package search

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// bodySeeds are request bodies scanObject reads and bodies it leaves to
// encoding/json.
var bodySeeds = []string{
	``, ` `, `{}`, ` { } `, `null`, `[]`, `"x"`, `1`, `{`, `}`, `{"query"}`, `{"query":}`, `{"query":"a",}`, `{"query":"a"} x`,
	`{"query":"fox"}`, `{"query":"fox","top_k":3,"mode":"dense"}`, "{\n\t\"query\" : \"fox\" ,\r\n\"top_k\": 10 }\n",
	`{"query":"a","query":"b"}`, `{"Query":"a"}`, `{"QUERY":"a","query":"b"}`, `{"query":"b","QUERY":"a"}`, `{"TOP_K":2}`,
	`{"\u0071uery":"a"}`, `{"ſcore_threshold":1}`, `{"top_\u212a":1}`, `{"unknown":[1,{"a":null}],"query":"x"}`,
	`{"query":"caf\u00e9 \"q\" \\ \/ \b\f\n\r\t"}`, `{"query":"bad \u12"}`, `{"query":"bad \x"}`, "{\"query\":\"ctl \x01\"}",
	"{\"query\":\"invalid \xff utf8\"}", "{\"query\":\"é 日本\"}", "{\"k\xc3\xa9\":1}",
	`{"vector":[0.5,-1,2e3,1E-2,0,-0.0,1.5e+2]}`, `{"vector":[01]}`, `{"vector":[1.]}`, `{"vector":[-]}`, `{"vector":[.5]}`, `{"vector":[1e]}`,
	`{"vector":[1,]}`, `{"vector":[1 2]}`, `{"top_k":true,"mode":false,"filter":null}`, `{"top_k":tru}`, `{"top_k":nul}`,
	`{"filter":{"env":"prod","tier":[1,2],"x":{"y":[[]]}}}`, `{"filter":{"env" "prod"}}`, `{"filter":{1:2}}`, `{"filter":{"a":1,}}`,
	`{"user_id":"alice","collection":"docs","query":"x"}`, `{"limit":5,"cursor":"abc"}`, `{"doc_ids":["a","b\n"]}`,
	`{"x":` + strings.Repeat("[", maxScanDepth+2) + strings.Repeat("]", maxScanDepth+2) + `}`,
	`{"x":` + strings.Repeat("[", maxScanDepth) + strings.Repeat("]", maxScanDepth) + `}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"query":"x"}`,
}

// checkBody checks that decodeBody decodes data as json.Unmarshal does.
func checkBody[B any](t *testing.T, data string, field func(*B) fields) {
	t.Helper()
	var got B
	gotErr := decodeBody([]byte(data), &got, field(&got))
	var want B
	wantErr := json.Unmarshal([]byte(data), &want)
	if strings.TrimSpace(data) == "" {
		wantErr = nil
	}
	if (gotErr != nil) != (wantErr != nil) || wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Errorf("%q:\n got %+v, %v\nwant %+v, %v", data, got, gotErr, want, wantErr)
	}
}

// checkBodies checks every kind of body.
func checkBodies(t *testing.T, data string) {
	t.Helper()
	checkBody(t, data, func(b *searchBody) fields { return b.field })
	checkBody(t, data, func(b *listBody) fields { return b.field })
	checkBody(t, data, func(b *statusBody) fields { return b.field })
}

// TestDecodeBody checks that request bodies are decoded as
// encoding/json decodes them, whether scanObject reads them or not.
func TestDecodeBody(t *testing.T) {
	for _, data := range bodySeeds {
		checkBodies(t, data)
	}
	if _, ok := scanObject([]byte(`{"query":"fox","top_k":3,"x":{"y":[1,"z"]}}`), nil); !ok {
		t.Error("scanObject left a plain body to encoding/json")
	}
}

// TestUnquote checks that unquote decodes strings as encoding/json does.
func TestUnquote(t *testing.T) {
	for _, raw := range []string{`""`, `"fox"`, `"caf\u00e9"`, `"a\"b"`, "\"\xff\"", "\"日本\"", `1`, `null`, `[]`, `"\ud800"`} {
		got, ok := unquote(json.RawMessage(raw))
		var want string
		err := json.Unmarshal([]byte(raw), &want)
		if ok != (err == nil) || got != want {
			t.Errorf("unquote(%s) = %q, %v; want %q, %v", raw, got, ok, want, err)
		}
	}
}

// FuzzDecodeBody checks decodeBody against encoding/json on any input.
//
//	go test -run XXX -fuzz DecodeBody ./search
func FuzzDecodeBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(s)
	}
	f.Fuzz(checkBodies)
}

// filterSeeds are filters decodeFilter reads itself or leaves to
// encoding/json.
var filterSeeds = []string{
	`{}`, `{"env":"prod"}`, `{"env":"prod","tier":[1,2,"x",true,false,-1.5e3]}`, `{"a":1,"a":2}`, `{"a":[],"a":3}`, `{"a":[]}`,
	`{"a":null}`, `{"a":[null]}`, `{"a":{"b":1}}`, `{"a":[[1]]}`, `{"user_id":"x"}`, `{"a.b":1}`, `{"a":1e400}`, `{"a":[1e400]}`,
	`{"a":12345678901234567890}`, `{"a":"caf\u00e9"}`, "{\"a\":\"\xff\"}", `{"\u0061":1}`, `[]`, `"x"`, `{"a":[1,2,]}`,
	`{ "a" : [ 1 , "b" ] }`, `{"a":true,"b":false}`, `{"a":-0}`, `{"a":0.5}`,
}

// checkFilter checks that decodeFilter decodes raw as it does when
// encoding/json reads everything (filterByJSON).
func checkFilter(t *testing.T, raw string) {
	t.Helper()
	got, gotErr := decodeFilter(json.RawMessage(raw))
	want, wantErr := filterByJSON(json.RawMessage(raw))
	if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %v, %v\nwant %v, %v", raw, got, gotErr, want, wantErr)
	}
}

// filterByJSON is decodeFilter with every value read by encoding/json.
func filterByJSON(raw json.RawMessage) (map[string][]any, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	out := map[string][]any{}
	for key, rv := range m {
		if problem := pipeline.ValidFilterKey(key); problem != "" {
			return nil, errors.New(problem)
		}
		list := []json.RawMessage{rv}
		if bytes.HasPrefix(bytes.TrimSpace(rv), []byte("[")) {
			if err := json.Unmarshal(rv, &list); err != nil || len(list) == 0 {
				return nil, fmt.Errorf("array %s", rv)
			}
		}
		for _, e := range list {
			var v any
			if err := json.Unmarshal(e, &v); err != nil {
				return nil, err
			}
			switch v.(type) {
			case string, bool:
			case float64:
				var ok bool
				if v, ok = number(e); !ok {
					return nil, fmt.Errorf("number %s", e)
				}
			default:
				return nil, fmt.Errorf("value %s", e)
			}
			out[key] = append(out[key], v)
		}
	}
	return out, nil
}

// TestDecodeFilter checks decodeFilter against encoding/json.
func TestDecodeFilter(t *testing.T) {
	for _, raw := range filterSeeds {
		checkFilter(t, raw)
	}
}

// FuzzDecodeFilter checks decodeFilter against encoding/json on any input.
//
//	go test -run XXX -fuzz DecodeFilter ./search
func FuzzDecodeFilter(f *testing.F) {
	for _, s := range filterSeeds {
		f.Add(s)
	}
	f.Fuzz(checkFilter)
}

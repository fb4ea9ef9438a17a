package lww

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func TestKeyEncoding(t *testing.T) {
	for _, tt := range [][3]string{{"docs", "alice", "d1"}, {"c", "u", ""}, {"kb_2", "bob-9", "a/b c\u00e9"}} {
		sum := sha256.Sum256([]byte(tt[2]))
		want := tt[0] + "." + tt[1] + "." + base64.RawURLEncoding.EncodeToString(sum[:])
		if got := Key(tt[0], tt[1], tt[2]); got != want {
			t.Errorf("Key%q = %q, want %q", tt, got, want)
		}
	}
}

func TestBatchStrings(t *testing.T) {
	if got, want := prefixed("rag.version.", []string{"a", "", "bc"}), []string{"rag.version.a", "rag.version.", "rag.version.bc"}; !slices.Equal(got, want) {
		t.Errorf("prefixed = %q, want %q", got, want)
	}
	if got := prefixed("p.", nil); len(got) != 0 {
		t.Errorf("prefixed of none = %q", got)
	}
	for _, n := range []int{0, 1, 10, 11, 257} {
		got := replySubjects("_INBOX.x", n)
		want := make([]string, n)
		for k := range want {
			want[k] = fmt.Sprint("_INBOX.x.", k)
		}
		if !slices.Equal(got, want) {
			t.Errorf("replySubjects(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDirectGetRequest(t *testing.T) {
	for _, subjects := range [][]string{
		{"rag.version._ragpipe"},
		{"rag.version._ragpipe", "rag.version.docs.alice.AbC-_x", "rag.version.d.u.h"},
		{"rag.version._ragpipe", `a"b`, `c\d`, "e<f>&", "g\u00e9", "h\x01"},
	} {
		want, err := json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
			Batch     int      `json:"batch"`
		}{subjects, len(subjects)})
		if err != nil {
			t.Fatal(err)
		}
		if got := directGetRequest(subjects); string(got) != string(want) {
			t.Errorf("directGetRequest(%q) = %s, want %s", subjects, got, want)
		}
	}
}

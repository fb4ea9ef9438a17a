package pipeline_test

import (
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// The expected ids were computed independently, with Python:
//
//	python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "alice/ec2/i-0abc123/0"))'
func TestPointID(t *testing.T) {
	for _, tc := range []struct {
		user, doc string
		index     int
		want      string
	}{
		{"alice", "ec2/i-0abc123", 0, "9b89c13a-f53b-583b-b6db-d5ec94e9016d"},
		{"alice", "ec2/i-0abc123", 1, "1d8c0670-1605-56a8-8d0c-34e217eaf6cb"},
		{"bob", "doc", 12, "6ed955b9-2fdd-5c36-9267-ad5f408c14cd"},
		{"u", "日本語", 3, "d9afdc5a-6058-589c-b85a-eabd7145e312"},
		{"alice", "", 0, "f5e05ff9-84bd-5371-b0fc-bcf097d7ae60"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := pipeline.PointID(tc.user, tc.doc, tc.index); got != tc.want {
				t.Errorf("PointID(%q, %q, %d) = %s, want %s", tc.user, tc.doc, tc.index, got, tc.want)
			}
		})
	}
}

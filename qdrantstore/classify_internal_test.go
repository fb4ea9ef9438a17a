package qdrantstore

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/pipeline"
)

// A rejected key or permission must never dead-letter good events: it is a
// configuration problem the worker waits out, not a permanent failure.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err                      error
		permanent, misconfigured bool
	}{
		{status.Error(codes.Unauthenticated, "bad key"), false, true},
		{fmt.Errorf("qdrant apply %q: gave up after 9 attempts: %w", "docs", status.Error(codes.PermissionDenied, "read-only key")), false, true},
		{status.Error(codes.Unavailable, "down"), false, false},
		{status.Error(codes.InvalidArgument, "bad vector"), true, false},
	} {
		got := classify(tc.err)
		if pipeline.IsPermanent(got) != tc.permanent || pipeline.IsMisconfigured(got) != tc.misconfigured {
			t.Errorf("classify(%v): permanent %v, misconfigured %v; want %v, %v",
				tc.err, pipeline.IsPermanent(got), pipeline.IsMisconfigured(got), tc.permanent, tc.misconfigured)
		}
	}
}

package main

import (
	"testing"

	"google.golang.org/grpc/encoding"
)

// A compressor registered in the process (by importing
// google.golang.org/grpc/encoding/gzip) is offered to every gRPC server it
// calls, and Qdrant then gzips every answer: searches took three times as
// long. QDRANT_COMPRESSION turns gzip on per connection instead.
func TestNoCompressorRegistered(t *testing.T) {
	if c := encoding.GetCompressor("gzip"); c != nil {
		t.Fatal("a package of the binary registers the gzip compressor for every gRPC connection; configure compression per connection instead")
	}
}

package qdrantproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBinary writes an executable file named qdrant under dir.
func fakeBinary(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "qdrant")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	cache := filepath.Join(root, "cache")
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("PATH", filepath.Join(root, "bin"))
	t.Setenv("QDRANT_BIN", "")

	_, err := Find()
	if err == nil || !strings.Contains(err.Error(), "scripts/install-qdrant.sh") {
		t.Fatalf("no binary anywhere: %v, want an error saying to run scripts/install-qdrant.sh", err)
	}

	cached := fakeBinary(t, filepath.Join(cache, "ragpipe", "qdrant-"+Version))
	if got, err := Find(); err != nil || got != cached {
		t.Fatalf("Find() = %q, %v; want the cached %s", got, err, cached)
	}

	onPath := fakeBinary(t, filepath.Join(root, "bin"))
	if got, err := Find(); err != nil || got != onPath {
		t.Fatalf("Find() = %q, %v; want %s on the PATH", got, err, onPath)
	}

	explicit := fakeBinary(t, filepath.Join(root, "explicit"))
	t.Setenv("QDRANT_BIN", explicit)
	if got, err := Find(); err != nil || got != explicit {
		t.Fatalf("Find() = %q, %v; want QDRANT_BIN %s", got, err, explicit)
	}

	notExecutable := filepath.Join(root, "explicit", "notes.txt")
	if err := os.WriteFile(notExecutable, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QDRANT_BIN", notExecutable)
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), "QDRANT_BIN") {
		t.Fatalf("a QDRANT_BIN that is not executable: %v, want an error naming QDRANT_BIN", err)
	}
}

//go:build !unix

package localstore

import (
	"os"
	"path/filepath"
)

// lockDir opens dir's lock file; without flock, nothing stops a second
// process.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
}

// unlockDir closes lockDir's file.
func unlockDir(f *os.File) error { return f.Close() }

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }

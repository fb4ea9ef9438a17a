package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ragpipe/ragpipe/pipeline"
)

// AutoCreate is the RAGPIPE_AUTO_CREATE setting: which unknown collections an
// event may create on first need. The zero value allows none.
type AutoCreate struct {
	all      bool
	names    map[string]bool
	prefixes []string
}

// Allows reports whether an event may create the collection name.
func (a AutoCreate) Allows(name string) bool {
	if a.all || a.names[name] {
		return true
	}
	for _, p := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// String gives the setting as it is written.
func (a AutoCreate) String() string {
	if a.all {
		return "true"
	}
	if len(a.names) == 0 && len(a.prefixes) == 0 {
		return "false"
	}
	parts := slices.Sorted(maps.Keys(a.names))
	for _, p := range a.prefixes {
		parts = append(parts, p+"*")
	}
	return strings.Join(parts, ",")
}

// UnmarshalText reads true, false, or a comma-separated list of collection
// names and prefix* patterns.
func (a *AutoCreate) UnmarshalText(text []byte) error {
	*a = AutoCreate{}
	switch s := strings.TrimSpace(string(text)); s {
	case "true":
		a.all = true
		return nil
	case "false":
		return nil
	}
	var errs []error
	for item := range strings.SplitSeq(string(text), ",") {
		item = strings.TrimSpace(item)
		if prefix, ok := strings.CutSuffix(item, "*"); ok {
			// A prefix is valid when some collection name can start with it.
			if !pipeline.ValidCollection(prefix + "x") {
				errs = append(errs, fmt.Errorf("pattern %q: want the start of a collection name (a-z 0-9 _ -, starting with a letter) and *", item))
				continue
			}
			a.prefixes = append(a.prefixes, prefix)
			continue
		}
		if !pipeline.ValidCollection(item) {
			errs = append(errs, fmt.Errorf("%q: not true, false, a collection name or a prefix* pattern", item))
			continue
		}
		if a.names == nil {
			a.names = make(map[string]bool)
		}
		a.names[item] = true
	}
	return errors.Join(errs...)
}

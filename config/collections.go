package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ragpipe/ragpipe/pipeline"
)

var (
	collectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	profileNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// parseCollections parses RAGPIPE_COLLECTIONS, reporting every bad entry.
func parseCollections(s string) (any, error) {
	var (
		cs   []pipeline.Collection
		errs []error
		seen = map[string]bool{}
	)
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		parts := strings.Split(entry, ":")
		if len(parts) != 3 && len(parts) != 4 {
			errs = append(errs, fmt.Errorf("entry %q: must be name:dims:distance[:profile], such as documents:1024:cosine", entry))
			continue
		}
		var profile string
		if len(parts) == 4 {
			profile = strings.ToLower(parts[3])
		}
		name, dist := parts[0], pipeline.Distance(strings.ToLower(parts[2]))
		dims, err := strconv.Atoi(parts[1])
		bad := len(errs)
		if !collectionNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("entry %q: name must be 1-64 characters of a-z 0-9 _ -, starting with a letter", entry))
		}
		if err != nil || dims < 1 || dims > 65536 {
			errs = append(errs, fmt.Errorf("entry %q: dims must be an integer from 1 to 65536", entry))
		}
		if !slices.Contains([]pipeline.Distance{pipeline.Cosine, pipeline.Dot, pipeline.Euclid, pipeline.Manhattan}, dist) {
			errs = append(errs, fmt.Errorf("entry %q: distance must be cosine, dot, euclid or manhattan", entry))
		}
		if len(parts) == 4 && !profileNameRE.MatchString(profile) {
			errs = append(errs, fmt.Errorf("entry %q: profile must be 1-32 letters, digits or _, starting with a letter", entry))
		}
		if seen[name] {
			errs = append(errs, fmt.Errorf("entry %q: collection %q is listed twice", entry, name))
		}
		seen[name] = true
		if len(errs) == bad {
			cs = append(cs, pipeline.Collection{Name: name, Dims: dims, Distance: dist, Embedder: profile})
		}
	}
	return cs, errors.Join(errs...)
}

// parseProfiles reads the embedder profiles that collections name and
// those the environment defines (RAGPIPE_EMBEDDER_<PROFILE>_KIND), so that a
// generation may use a profile no configured collection names, appending
// their problems to errs.
func parseProfiles(vars map[string]string, collections []pipeline.Collection, errs []error) (map[string]Embedder, []error) {
	var profiles map[string]Embedder // nil when there is none
	read := func(name, namedBy string) {
		if _, done := profiles[name]; done || name == "" {
			return
		}
		display := func(key string) string { return ProfileVar(key, name) }
		own := make(map[string]string) // by the default embedder's variables
		eachSetting(reflect.ValueOf(Embedder{}), func(f reflect.StructField, _ reflect.Value) {
			if v, ok := vars[display(f.Tag.Get("env"))]; ok {
				own[f.Tag.Get("env")] = v
			}
		})
		if own["RAGPIPE_EMBEDDER"] == "" {
			errs = append(errs, fmt.Errorf("%s: not set, but RAGPIPE_COLLECTIONS entry %q names embedder profile %q",
				display("RAGPIPE_EMBEDDER"), namedBy, name))
		}
		e, perrs := parse[Embedder](own, display)
		errs = append(errs, perrs...)
		if e != nil {
			if profiles == nil {
				profiles = make(map[string]Embedder)
			}
			profiles[name] = *e
		}
	}
	for _, c := range collections {
		read(c.Embedder, c.Name)
	}
	defined, errs := definedProfiles(vars, errs)
	for _, name := range defined {
		read(name, "")
	}
	return profiles, errs
}

// definedProfiles returns, sorted, the profiles whose kind the environment
// sets (RAGPIPE_EMBEDDER_<PROFILE>_KIND, not empty), appending the problems
// of variables of that form whose PROFILE is no profile name to errs.
func definedProfiles(vars map[string]string, errs []error) ([]string, []error) {
	const prefix, suffix = "RAGPIPE_EMBEDDER_", "_KIND"
	var names []string
	for _, key := range slices.Sorted(maps.Keys(vars)) {
		if len(key) <= len(prefix)+len(suffix) || !strings.HasPrefix(key, prefix) || !strings.HasSuffix(key, suffix) || vars[key] == "" {
			continue
		}
		upper := key[len(prefix) : len(key)-len(suffix)]
		name := strings.ToLower(upper)
		if strings.ToUpper(name) != upper || !profileNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: sets no embedder profile: <PROFILE> must be 1-32 upper-case letters, digits or _, starting with a letter", key))
			continue
		}
		names = append(names, name)
	}
	return names, errs
}

// layoutVars are the settings a collection may override, by their global variables.
var layoutVars = []string{"RAGPIPE_SHARDS", "RAGPIPE_REPLICATION_FACTOR", "RAGPIPE_WRITE_CONSISTENCY"}

// CollectionVar returns the variable that sets, for one collection, the
// layout setting whose global variable is name: RAGPIPE_SHARDS becomes
// RAGPIPE_COLLECTION_<NAME>_SHARDS, the name upper-cased with '-' as '_'.
func CollectionVar(name, collection string) string {
	return "RAGPIPE_COLLECTION_" + strings.ToUpper(strings.ReplaceAll(collection, "-", "_")) + strings.TrimPrefix(name, "RAGPIPE")
}

// parseLayouts reads the per-collection layout variables into
// cfg.Collections, appending their problems to errs. A variable that names
// no configured collection is a problem too: it is most likely a typo.
func parseLayouts(vars map[string]string, cfg *Config, errs []error) []error {
	known := map[string]bool{}
	for i := range cfg.Collections {
		c := &cfg.Collections[i]
		for j, name := range layoutVars {
			key := CollectionVar(name, c.Name)
			if known[key] {
				errs = append(errs, fmt.Errorf("%s: two collections of RAGPIPE_COLLECTIONS share this variable; rename one", key))
			}
			known[key] = true
			v, ok := vars[key]
			if !ok || v == "" {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s=%q: must be an integer >= 1", key, v))
				continue
			}
			*[]*uint32{&c.Shards, &c.ReplicationFactor, &c.WriteConsistency}[j] = uint32(n)
		}
		if wc, rf := cmp.Or(c.WriteConsistency, cfg.WriteConsistency), cmp.Or(c.ReplicationFactor, cfg.ReplicationFactor); wc > rf {
			errs = append(errs, fmt.Errorf("collection %q: write consistency %d exceeds its replication factor %d (%s, %s)",
				c.Name, wc, rf, CollectionVar("RAGPIPE_WRITE_CONSISTENCY", c.Name), CollectionVar("RAGPIPE_REPLICATION_FACTOR", c.Name)))
		}
	}
	for _, key := range slices.Sorted(maps.Keys(vars)) {
		if strings.HasPrefix(key, "RAGPIPE_COLLECTION_") && !known[key] {
			errs = append(errs, fmt.Errorf("%s: names no collection of RAGPIPE_COLLECTIONS or no layout setting (SHARDS, REPLICATION_FACTOR, WRITE_CONSISTENCY)", key))
		}
	}
	return errs
}

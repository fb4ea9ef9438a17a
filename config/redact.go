package config

import (
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

const redacted = "REDACTED"

// Redacted returns a copy of c with every secret that is set replaced by
// "REDACTED": the API keys (embedder profiles' included), the NATS password
// and token, and credentials in the userinfo of NATS_URL, QDRANT_URL and the
// embedders' URLs.
func (c Config) Redacted() Config {
	profiles := make(map[string]Embedder, len(c.Profiles))
	for name, e := range c.Profiles {
		e.APIKey, e.URL = redactKey(e.APIKey), redactURL(e.URL)
		profiles[name] = e
	}
	if c.Profiles != nil {
		c.Profiles = profiles
	}
	for _, s := range []*string{&c.NATS.Password, &c.NATS.Token, &c.Qdrant.APIKey, &c.Embedder.APIKey} {
		*s = redactKey(*s)
	}
	for _, s := range []*string{&c.NATS.URL, &c.Qdrant.URL, &c.Embedder.URL} {
		urls := strings.Split(*s, ",")
		for i, u := range urls {
			urls[i] = redactURL(u)
		}
		*s = strings.Join(urls, ",")
	}
	return c
}

// redactKey hides a secret that is set.
func redactKey(s string) string {
	if s == "" {
		return s
	}
	return redacted
}

// redactURL hides the password of a URL's userinfo, or the whole userinfo
// when it is a lone name (NATS reads that as a token). A value with an "@"
// that does not parse as a URL with userinfo is hidden whole.
func redactURL(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.User == nil {
		return redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
	} else {
		u.User = url.User(redacted)
	}
	return u.String()
}

// String prints the redacted settings as space-separated VARIABLE=value pairs.
func (c Config) String() string {
	var b strings.Builder
	c.Redacted().each(func(key string, val any) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", key, val)
	})
	return b.String()
}

// MarshalZerologObject logs the redacted settings, one field per variable,
// so that a Config can be passed to zerolog's Object.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	c.Redacted().each(func(key string, val any) { e.Interface(key, val) })
}

// each calls fn with every variable and its value in c, durations and
// collections in their environment form, the embedder profiles' last.
func (c Config) each(fn func(key string, val any)) {
	eachSetting(reflect.ValueOf(c), func(f reflect.StructField, v reflect.Value) {
		fn(f.Tag.Get("env"), envForm(v.Interface()))
	})
	for _, name := range slices.Sorted(maps.Keys(c.Profiles)) {
		eachSetting(reflect.ValueOf(c.Profiles[name]), func(f reflect.StructField, v reflect.Value) {
			fn(ProfileVar(f.Tag.Get("env"), name), envForm(v.Interface()))
		})
	}
}

// envForm returns val as it is written in the environment where that differs
// from fmt's %v.
func envForm(val any) any {
	switch x := val.(type) {
	case time.Duration:
		return x.String()
	case []pipeline.Collection:
		s := make([]string, len(x))
		for i, c := range x {
			s[i] = fmt.Sprintf("%s:%d:%s", c.Name, c.Dims, c.Distance)
			if c.Embedder != "" {
				s[i] += ":" + c.Embedder
			}
		}
		return strings.Join(s, ",")
	}
	return val
}

// eachSetting calls fn for every field of the struct v that has an env tag,
// in declaration order, descending into the setting groups.
func eachSetting(v reflect.Value, fn func(reflect.StructField, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		switch f := t.Field(i); {
		case f.Tag.Get("env") != "":
			fn(f, v.Field(i))
		case f.Type.Kind() == reflect.Struct:
			eachSetting(v.Field(i), fn)
		}
	}
}

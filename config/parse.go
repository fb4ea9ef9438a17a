package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/joho/godotenv"

	"github.com/ragpipe/ragpipe/pipeline"
)

var appEnvRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// environment merges environ over the .env.<APP_ENV> profile in dir, if any.
func environment(environ []string, dir string) (map[string]string, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			vars[k] = v
		}
	}
	appEnv := vars["APP_ENV"]
	if appEnv == "" {
		f, _ := reflect.TypeFor[Config]().FieldByName("AppEnv")
		appEnv = f.Tag.Get("envDefault")
	}
	if !appEnvRE.MatchString(appEnv) {
		return nil, fmt.Errorf("APP_ENV=%q: must be letters, digits, '.', '_' or '-', starting with a letter or digit", appEnv)
	}
	path := filepath.Join(dir, ".env."+appEnv)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return vars, nil
	}
	if err != nil {
		return nil, err
	}
	profile, err := godotenv.UnmarshalBytes(data)
	if err != nil {
		// godotenv's message quotes the file, which may hold secrets.
		return nil, fmt.Errorf("%s: invalid dotenv syntax (details withheld: the file may hold secrets)", path)
	}
	for k, v := range profile {
		if _, ok := vars[k]; !ok {
			vars[k] = v
		}
	}
	vars["APP_ENV"] = appEnv
	return vars, nil
}

var collectionsType = reflect.TypeFor[[]pipeline.Collection]()

// parse fills a T from vars. A variable that does not parse is reported,
// under the name that display gives it, and then treated as unset, so that
// validation sees its default instead of a zero value and does not report it
// a second time. parse returns a nil T only for errors that are bugs in T's
// tags.
func parse[T any](vars map[string]string, display func(key string) string) (*T, []error) {
	opts := env.Options{
		Environment: vars,
		FuncMap:     map[reflect.Type]env.ParserFunc{collectionsType: parseCollections},
	}
	var cfg T
	err := env.ParseWithOptions(&cfg, opts)
	if err == nil {
		return &cfg, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return nil, []error{err}
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			return nil, append(errs, e)
		}
		key := keyOf(reflect.TypeFor[T](), pe)
		if key == "" {
			return nil, append(errs, e)
		}
		errs = append(errs, describe(display(key), vars[key], pe)...)
		delete(vars, key)
	}
	var zero T
	cfg = zero
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		return nil, append(errs, err)
	}
	return &cfg, errs
}

// keyOf returns the variable of the field of t a ParseError is about.
func keyOf(t reflect.Type, pe env.ParseError) string {
	var key string
	eachSetting(reflect.New(t).Elem(), func(f reflect.StructField, _ reflect.Value) {
		if key == "" && f.Name == pe.Name && f.Type == pe.Type {
			key = f.Tag.Get("env")
		}
	})
	return key
}

// describe turns a ParseError into messages naming the variable and the
// accepted form. Only non-string fields fail to parse, and no secret is one,
// so the value may be shown.
func describe(key, val string, pe env.ParseError) []error {
	if joined, ok := pe.Err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, err := range joined.Unwrap() {
			errs = append(errs, fmt.Errorf("%s %w", key, err))
		}
		return errs
	}
	want := pe.Err.Error()
	switch kind := pe.Type.Kind(); {
	case pe.Type == reflect.TypeFor[time.Duration]():
		want = "not a duration (such as 500ms, 30s or 2m)"
	case errors.Is(pe.Err, strconv.ErrRange):
		want = "out of range"
	case kind == reflect.Bool:
		want = "not a boolean (true or false)"
	case kind >= reflect.Int && kind <= reflect.Int64:
		want = "not an integer"
	case kind >= reflect.Uint && kind <= reflect.Uint64:
		want = "not a non-negative integer"
	}
	return []error{fmt.Errorf("%s=%q: %s", key, val, want)}
}

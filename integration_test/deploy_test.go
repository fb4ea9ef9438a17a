package integration_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ragpipe/ragpipe/config"
)

// Docker has no engine here, so the deploy files are checked by reading them:
// they must parse, pin the tested versions, name only real settings and real
// subcommands, and wire probes, healthchecks and scaling to what ragpipe serves.

// settings is every environment variable ragpipe reads.
func settings() map[string]bool {
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Name] = true
	}
	return known
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// dig follows keys (strings for maps, ints for lists) into a decoded YAML value.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// assertSubcommand checks that `ragpipe name --help` succeeds.
func assertSubcommand(t *testing.T, where, name string) {
	t.Helper()
	if code, out := run(t, nil, name, "--help"); code != 0 {
		t.Errorf("%s runs `ragpipe %s`, which is not a command: %s", where, name, out)
	}
}

func TestComposeFile(t *testing.T) {
	docs := yamlDocs(t, "../docker-compose.yml")
	services, _ := dig(docs[0], "services").(map[string]any)
	known := settings()
	for _, name := range []string{"nats", "qdrant-1", "qdrant-2", "qdrant-3", "worker", "searcher"} {
		svc := services[name]
		if svc == nil {
			t.Errorf("service %s missing", name)
			continue
		}
		if dig(svc, "healthcheck", "test") == nil {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	for _, name := range []string{"qdrant-1", "qdrant-2", "qdrant-3"} {
		if img := dig(services[name], "image"); img != "qdrant/qdrant:v1.16.3" {
			t.Errorf("%s image %v, want qdrant/qdrant:v1.16.3", name, img)
		}
		if dig(services[name], "volumes", 0) == nil {
			t.Errorf("%s keeps no data volume", name)
		}
		if dig(services[name], "environment", "QDRANT__CLUSTER__ENABLED") != "true" {
			t.Errorf("%s is not in cluster mode", name)
		}
	}
	if !strings.Contains(strings.Join(toStrings(dig(services["nats"], "volumes")), " "), "./deploy/nats/") {
		t.Error("nats does not load the permissions config from deploy/nats/")
	}
	if _, err := os.Stat("../" + strings.TrimPrefix(strings.Split(toStrings(dig(services["nats"], "volumes"))[0], ":")[0], "./")); err != nil {
		t.Errorf("nats config: %v", err)
	}
	for _, name := range []string{"worker", "searcher"} {
		svc := services[name]
		cmd := toStrings(dig(svc, "command"))
		if len(cmd) == 0 {
			t.Fatalf("%s has no command", name)
		}
		assertSubcommand(t, "compose service "+name, cmd[0])
		if dig(svc, "deploy", "replicas") != 2 {
			t.Errorf("%s: want 2 replicas", name)
		}
		env, _ := dig(svc, "environment").(map[string]any)
		for k := range env {
			if !known[k] {
				t.Errorf("%s sets %s, which ragpipe does not read", name, k)
			}
		}
		if !strings.HasSuffix(dig(svc, "build", "dockerfile").(string), "deploy/Dockerfile") {
			t.Errorf("%s is not built from deploy/Dockerfile", name)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	known := settings()
	deployments := map[string]map[string]any{}
	var pdbs, scaled []map[string]any
	for _, file := range []string{"config.yaml", "worker.yaml", "searcher.yaml", "keda.yaml"} {
		for _, doc := range yamlDocs(t, "../deploy/k8s/"+file) {
			switch doc["kind"] {
			case "Deployment":
				deployments[dig(doc, "metadata", "name").(string)] = doc
			case "PodDisruptionBudget":
				pdbs = append(pdbs, doc)
			case "ScaledObject":
				scaled = append(scaled, doc)
			case "ConfigMap":
				for k := range dig(doc, "data").(map[string]any) {
					if !known[k] {
						t.Errorf("ConfigMap sets %s, which ragpipe does not read", k)
					}
				}
			}
		}
	}
	for _, role := range []string{"worker", "searcher"} {
		d := deployments["ragpipe-"+role]
		if d == nil {
			t.Fatalf("no Deployment ragpipe-%s", role)
		}
		c := dig(d, "spec", "template", "spec", "containers", 0)
		assertSubcommand(t, "Deployment ragpipe-"+role, toStrings(dig(c, "args"))[0])
		if dig(c, "livenessProbe", "httpGet", "path") != "/healthz" || dig(c, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("ragpipe-%s probes do not use /healthz and /readyz", role)
		}
		if dig(c, "ports", 0, "containerPort") != 9090 {
			t.Errorf("ragpipe-%s does not expose 9090", role)
		}
		if dig(c, "resources", "requests", "memory") == nil || dig(c, "resources", "limits", "memory") == nil {
			t.Errorf("ragpipe-%s has no memory request and limit", role)
		}
		for _, e := range dig(c, "env").([]any) {
			if name := dig(e, "name").(string); !known[name] {
				t.Errorf("ragpipe-%s sets %s, which ragpipe does not read", role, name)
			}
		}
		labels := dig(d, "spec", "selector", "matchLabels")
		if !slices.ContainsFunc(pdbs, func(p map[string]any) bool {
			return equalYAML(dig(p, "spec", "selector", "matchLabels"), labels)
		}) {
			t.Errorf("no PodDisruptionBudget selects ragpipe-%s", role)
		}
	}
	if len(scaled) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(scaled))
	}
	s := scaled[0]
	trigger := dig(s, "spec", "triggers", 0)
	if dig(s, "spec", "scaleTargetRef", "name") != "ragpipe-worker" || dig(trigger, "type") != "nats-jetstream" ||
		dig(trigger, "metadata", "stream") != "RAG_INGEST" || dig(trigger, "metadata", "consumer") != "ragpipe-worker" {
		t.Errorf("ScaledObject does not scale ragpipe-worker on RAG_INGEST/ragpipe-worker lag: %v", s)
	}
}

func TestHelmValuesAndDockerfile(t *testing.T) {
	q := yamlDocs(t, "../deploy/helm/qdrant-values.yaml")[0]
	if dig(q, "image", "tag") != "v1.16.3" || dig(q, "config", "cluster", "enabled") != true || dig(q, "replicaCount") != 3 {
		t.Errorf("qdrant values: want v1.16.3, cluster mode, 3 replicas: %v", q)
	}
	n := yamlDocs(t, "../deploy/helm/nats-values.yaml")[0]
	if dig(n, "config", "jetstream", "enabled") != true || dig(n, "config", "cluster", "replicas") != 3 {
		t.Errorf("nats values: want JetStream on 3 clustered servers: %v", n)
	}
	data, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM golang:\S+ AS build$`),
		regexp.MustCompile(`CGO_ENABLED=0 go build .* \./cmd/ragpipe`),
		regexp.MustCompile(`(?m)^COPY --from=build `),
		regexp.MustCompile(`(?m)^USER [1-9][0-9]*`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/ragpipe"\]`),
	} {
		if !want.MatchString(df) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func equalYAML(a, b any) bool {
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return bytes.Equal(x, y)
}

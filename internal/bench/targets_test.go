package bench

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// readVegetaTargets reads a file of JSON targets with vegeta's own reader.
func readVegetaTargets(t *testing.T, path string) []vegeta.Target {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets, err := vegeta.ReadAllTargets(vegeta.NewJSONTargeter(f, nil, nil))
	if err != nil {
		t.Fatalf("%s: vegeta reads no targets from it: %v", path, err)
	}
	return targets
}

// The targets are the requests Run pre-generates for the same seed, scale,
// rates and periods, in its order, as vegeta reads them; kiln.yaml is the
// project Run serves.
func TestWriteTargetsAreRunsRequests(t *testing.T) {
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Scale, cfg.Seed = 0.01, 7
	cfg.Q1Rates, cfg.Q2Rates, cfg.Duration, cfg.Warmup = []float64{40, 90}, []float64{10}, 2*time.Second, time.Second
	dir := filepath.Join(t.TempDir(), "targets")
	got, err := WriteTargets(dir, "http://127.0.0.1:7070/", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The highest rate × (warm-up + duration) requests of each query type.
	if got.Q1Requests != 270 || got.Q2Requests != 30 {
		t.Errorf("wrote %d Q1 and %d Q2 requests, want 270 and 30", got.Q1Requests, got.Q2Requests)
	}
	gen := workload.NewGenerator(workload.Config{Seed: 7, Scale: 0.01, Now: time.Now()})
	for _, c := range []struct {
		file, query string
		n           int
	}{{TargetsQ1File, queryQ1Name, got.Q1Requests}, {TargetsQ2File, queryQ2Name, got.Q2Requests}} {
		want, err := genQueries(gen, project, 7, c.query, c.n, false)
		if err != nil {
			t.Fatal(err)
		}
		targets := readVegetaTargets(t, filepath.Join(dir, c.file))
		if len(targets) != want.len() {
			t.Fatalf("%s: %d targets, want %d", c.file, len(targets), want.len())
		}
		for i, tg := range targets {
			if tg.Method != "POST" || tg.URL != "http://127.0.0.1:7070/v1/features" || tg.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s line %d: %s %s %v, want POST http://127.0.0.1:7070/v1/features with Content-Type application/json", c.file, i+1, tg.Method, tg.URL, tg.Header)
			}
			if !bytes.Equal(tg.Body, want.bodies[i]) {
				t.Fatalf("%s line %d: body %s, want request %d of %s: %s", c.file, i+1, tg.Body, i, c.query, want.bodies[i])
			}
		}
	}
	yaml, err := os.ReadFile(filepath.Join(dir, TargetsProjectFile))
	if err != nil || !bytes.Equal(yaml, examples.FeedProject) {
		t.Errorf("%s is not the RW1 project (%v)", TargetsProjectFile, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// Another seed draws other requests.
	cfg.Seed = 8
	other := filepath.Join(t.TempDir(), "other")
	if _, err := WriteTargets(other, "http://127.0.0.1:7070", cfg); err != nil {
		t.Fatal(err)
	}
	a, b := readVegetaTargets(t, filepath.Join(dir, TargetsQ2File)), readVegetaTargets(t, filepath.Join(other, TargetsQ2File))
	if bytes.Equal(a[0].Body, b[0].Body) {
		t.Error("seeds 7 and 8 drew the same first Q2 request")
	}
}

// Arguments out of range are refused, and nothing is written.
func TestWriteTargetsRefusesBadArguments(t *testing.T) {
	good := DefaultConfig()
	good.Scale = 0.001
	for _, c := range []struct {
		name, url string
		edit      func(*Config)
	}{
		{"no scheme", "127.0.0.1:7070", func(*Config) {}},
		{"no host", "http://", func(*Config) {}},
		{"scale", "http://127.0.0.1:7070", func(c *Config) { c.Scale = 0 }},
		{"rate", "http://127.0.0.1:7070", func(c *Config) { c.Q1Rates = []float64{-5} }},
		{"duration", "http://127.0.0.1:7070", func(c *Config) { c.Duration = 0 }},
	} {
		cfg := good
		c.edit(&cfg)
		dir := filepath.Join(t.TempDir(), "targets")
		if _, err := WriteTargets(dir, c.url, cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want an error wrapping ErrConfig", c.name, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: the directory was created (%v)", c.name, err)
		}
	}
}

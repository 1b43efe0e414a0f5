package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// The files WriteTargets writes.
const (
	TargetsQ1File      = "q1.json"
	TargetsQ2File      = "q2.json"
	TargetsProjectFile = "kiln.yaml"
)

// Targets says what WriteTargets wrote.
type Targets struct {
	Dir                    string
	Q1Requests, Q2Requests int
}

// vegetaTarget is one line of vegeta's JSON targets (vegeta attack
// -format=json): the body is base64, as encoding/json writes a []byte.
type vegetaTarget struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// WriteTargets writes into dir, so that another load generator can send
// them, the requests of POST /v1/features that Run sends for cfg's Scale,
// Seed, rates, Duration and Warmup (the same draws, in the same order), to
// the server at baseURL (http://host:port):
//
//   - q1.json and q2.json: vegeta's JSON targets, request i of the query
//     type on line i+1 (Run's step at rate r sends requests 0 to
//     r·Warmup−1 in its warm-up, then the next r·Duration; a step that
//     needs more goes round again from the first);
//   - kiln.yaml: the RW1 project Run serves, to start "kiln serve -c" with
//     on a data directory Run loaded (Config.DataDir) with the same Scale
//     and Seed.
//
// It creates dir if need be; a file is replaced whole or not at all.
func WriteTargets(dir, baseURL string, cfg Config) (Targets, error) {
	if err := checkTargets(baseURL, cfg); err != nil {
		return Targets{}, err
	}
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		return Targets{}, err
	}
	gen := workload.NewGenerator(workload.Config{Seed: cfg.Seed, Scale: cfg.Scale, Now: time.Now()})
	q1, q2, err := drawQueries(gen, project, cfg, false)
	if err != nil {
		return Targets{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Targets{}, err
	}
	url := strings.TrimRight(baseURL, "/") + "/v1/features"
	for _, f := range []struct {
		name string
		q    *querySet
	}{{TargetsQ1File, q1}, {TargetsQ2File, q2}} {
		err := writeFileAtomic(dir, f.name, func(w *bufio.Writer) error { return writeVegetaTargets(w, url, f.q.bodies) })
		if err != nil {
			return Targets{}, err
		}
	}
	err = writeFileAtomic(dir, TargetsProjectFile, func(w *bufio.Writer) error {
		_, err := w.Write(examples.FeedProject)
		return err
	})
	if err != nil {
		return Targets{}, err
	}
	return Targets{Dir: dir, Q1Requests: q1.len(), Q2Requests: q2.len()}, nil
}

// checkTargets reports the values of WriteTargets' arguments out of range,
// as an error wrapping ErrConfig.
func checkTargets(baseURL string, cfg Config) error {
	var bad problems
	if !strings.HasPrefix(baseURL, "http://") || len(baseURL) == len("http://") {
		bad.add("target %q: give the server's base URL, like http://127.0.0.1:7070", baseURL)
	}
	bad.scale(cfg.Scale)
	bad.rates(slices.Concat(cfg.Q1Rates, cfg.Q2Rates)...)
	if cfg.Duration <= 0 || cfg.Warmup < 0 {
		bad.add("duration %v, warm-up %v: want duration > 0, warm-up ≥ 0", cfg.Duration, cfg.Warmup)
	}
	return bad.err("bench targets")
}

// writeVegetaTargets writes one POST of each body to url, a JSON object a
// line.
func writeVegetaTargets(w *bufio.Writer, url string, bodies [][]byte) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	t := vegetaTarget{Method: http.MethodPost, URL: url, Header: http.Header{"Content-Type": {"application/json"}}}
	for _, b := range bodies {
		t.Body = b
		if err := enc.Encode(&t); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes dir/name through write, into a temporary file
// renamed over name once whole.
func writeFileAtomic(dir, name string, write func(*bufio.Writer) error) (err error) {
	f, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := write(w); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	if err := errors.Join(w.Flush(), f.Chmod(0o644), f.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

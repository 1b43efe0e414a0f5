package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// startNode runs an RW1 node in-process, with the gRPC API and the admin
// listener beside it.
func startNode(t *testing.T) (url, grpcAddr, admin string) {
	t.Helper()
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Start(node.Config{Project: project, DataDir: t.TempDir(), Addr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n.URL(), n.GRPCAddr, n.AdminURL()
}

// A whole run at a tiny scale: every step measured without errors, the
// row sizes read, and the outputs written and well formed.
func TestRunRW1(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	url, grpcAddr, admin := startNode(t)
	for i, transport := range []string{TransportHTTP, TransportGRPC, TransportFeast} {
		cfg := DefaultConfig()
		cfg.Target, cfg.GRPCTarget, cfg.AdminTarget, cfg.Transport = url, grpcAddr, admin, transport
		cfg.Scale, cfg.Seed = 0.001, 7
		cfg.SkipLoad = i > 0 // loaded by the first run
		cfg.Settle, cfg.Baseline = 0, 200*time.Millisecond
		cfg.Live = 200
		// Q1 is measured in slices, Kiln and the floor in turn (300
		// requests: 6 slices); Q2 is too slow for slices of 50 requests.
		cfg.Q1Rates, cfg.Q2Rates = []float64{1000}, []float64{20}
		cfg.Duration, cfg.Warmup = 300*time.Millisecond, 100*time.Millisecond
		cfg.SaturationWorkers = 2
		cfg.OutDir = t.TempDir()
		var log bytes.Buffer
		cfg.Log = &log
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", transport, err, log.String())
		}
		if i == 0 && (rep.Load == nil || rep.Load.Accepted+rep.Load.DroppedLate != 20_000) {
			t.Errorf("%s: load %+v, want 20,000 events", transport, rep.Load)
		}
		if len(rep.Steps) != 5 {
			t.Fatalf("%s: %d steps, want 5 (Q1 kiln, floor; Q2 kiln, floor; saturation)", transport, len(rep.Steps))
		}
		for _, s := range rep.Steps {
			if s.Errors != 0 || s.Requests == 0 || s.Latency.P50 <= 0 {
				t.Errorf("%s: step %s %s %s: %d requests, %d errors (%s), p50 %v", transport, s.Query, s.Target, s.Mode, s.Requests, s.Errors, s.FirstError, s.Latency.P50)
			}
			if l := s.Latency; !(l.P99 <= l.P999 && l.P999 <= l.P9999 && l.P9999 <= l.Max) {
				t.Errorf("%s: step %s %s: p99 %v, p99.9 %v, p99.99 %v, max %v: not in order", transport, s.Query, s.Target, l.P99, l.P999, l.P9999, l.Max)
			}
			if s.ServerGCCycles > 0 && (s.ServerGCPauseMaxMS <= 0 || s.ServerGCPauseMaxMS > s.ServerGCPauseMS) {
				t.Errorf("%s: step %s %s: %d GC cycles, pauses %v ms, longest %v ms", transport, s.Query, s.Target, s.ServerGCCycles, s.ServerGCPauseMS, s.ServerGCPauseMaxMS)
			}
			// The floor is read over the same transport as Kiln's reads:
			// HTTP's /debug/rows beside Feast's endpoint.
			want := transport
			if transport == TransportFeast && s.Target == targetFloor {
				want = TransportHTTP
			}
			if s.Transport != want {
				t.Errorf("%s: step %s %s over %s, want %s", transport, s.Query, s.Target, s.Transport, want)
			}
		}
		for _, s := range rep.Steps[:2] {
			// The slices add up to the whole measured period.
			if s.Requests+s.Errors < 280 || s.Requests+s.Errors > 300 || len(s.Timeline) < 6 {
				t.Errorf("%s: step Q1 %s: %d requests and %d errors in %d seconds of timeline, want 300 in 6 slices",
					transport, s.Target, s.Requests, s.Errors, len(s.Timeline))
			}
		}
		if q1 := rep.Steps[0]; q1.ValuesPerRequest != 12 || q1.P99VsFloor <= 0 {
			t.Errorf("%s: Q1 %d values a request, p99/floor %v; want 12 and > 0", transport, q1.ValuesPerRequest, q1.P99VsFloor)
		}
		if q2 := rep.Steps[2]; q2.ValuesPerRequest != 9512 || q2.RowsPerRequest != 501 {
			t.Errorf("%s: Q2 %d values, %d rows a request; want 9512 and 501", transport, q2.ValuesPerRequest, q2.RowsPerRequest)
		}
		if len(rep.RowSizes) != 4 {
			t.Errorf("%s: %d row sizes, want 4", transport, len(rep.RowSizes))
		}
		for _, rs := range rep.RowSizes {
			if rs.RowsFound == 0 || rs.BytesPerRow <= 0 {
				t.Errorf("%s: row size %+v", transport, rs)
			}
		}
		if rep.Live.Accepted == 0 || rep.Live.Failed != 0 {
			t.Errorf("%s: live stream %+v", transport, rep.Live)
		}
		checkOutputs(t, cfg.OutDir)
		var table bytes.Buffer
		rep.PrintSummary(&table)
		for _, want := range []string{"p99/floor", "bytes per row", "user_engagement", "sat 2w"} {
			if !strings.Contains(table.String(), want) {
				t.Errorf("%s: summary lacks %q:\n%s", transport, want, table.String())
			}
		}
	}
}

// The overload step at a tiny scale: each query's saturation, half of it
// and the overloaded rate are measured, and the summary has a line per
// query and factor.
func TestRunOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	url, _, admin := startNode(t)
	cfg := DefaultConfig()
	cfg.Target, cfg.AdminTarget, cfg.Scale, cfg.Seed = url, admin, 0.001, 7
	cfg.Settle, cfg.Baseline, cfg.Live = 0, 0, 0
	cfg.Q1Rates, cfg.Q2Rates = nil, nil
	cfg.Duration, cfg.Warmup = 300*time.Millisecond, 100*time.Millisecond
	cfg.SaturationWorkers, cfg.Overload, cfg.OverloadFactors = 2, true, []float64{2}
	var log bytes.Buffer
	cfg.Log = &log
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(rep.Steps) != 6 || len(rep.Overload) != 2 {
		t.Fatalf("%d steps and %d overload results, want 6 (per query: saturation, half, 2×) and 2", len(rep.Steps), len(rep.Overload))
	}
	for i, o := range rep.Overload {
		sat, half, over := rep.Steps[3*i], rep.Steps[3*i+1], rep.Steps[3*i+2]
		if o.Query != sat.Query || sat.Mode != "closed" || o.SaturationRPS != sat.Achieved || o.SaturationRPS <= 0 {
			t.Errorf("overload %+v: saturation step %+v", o, sat)
		}
		if half.Offered != sat.Achieved/2 || over.Offered != 2*sat.Achieved || o.Offered != over.Offered {
			t.Errorf("%s: offered %v and %v, want half and twice the saturation rate %v", o.Query, half.Offered, over.Offered, sat.Achieved)
		}
		if o.HalfP99MS != half.Latency.P99 || o.AdmittedP99MS != over.Latency.P99 || o.Goodput != over.Achieved/sat.Achieved {
			t.Errorf("overload %+v does not sum up its steps", o)
		}
		if over.Requests == 0 || over.Errors != 0 {
			t.Errorf("%s at 2×: %d answered, %d errors (%s)", o.Query, over.Requests, over.Errors, over.FirstError)
		}
	}
	var table bytes.Buffer
	rep.PrintSummary(&table)
	if !strings.Contains(table.String(), "refused p99 ms") || !strings.Contains(table.String(), "(2×)") {
		t.Errorf("summary lacks the overload table:\n%s", table.String())
	}
}

func checkOutputs(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(rep.Steps) == 0 || len(rep.Steps[0].Distribution) == 0 {
		t.Errorf("results.json has no distributions")
	}
	svg, err := os.ReadFile(filepath.Join(dir, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg)
	for _, want := range []string{"Q1", "Q2", "kiln at 1000/s", "floor at 20/s", "99%", "percentile"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("latency.svg lacks %q", want)
		}
	}
}

// checkXML fails unless b is well-formed XML.
func checkXML(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("latency.svg is not well-formed XML: %v", err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Transport, cfg.Scale, cfg.Q1Rates, cfg.Pushers = "carrier-pigeon", -1, []float64{0}, 0
	_, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err %v, want ErrConfig", err)
	}
	for _, want := range []string{"carrier-pigeon", "scale -1", "rate 0", "pushers 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestSVGWithoutSteps(t *testing.T) {
	checkXML(t, (&Report{}).svg())
}

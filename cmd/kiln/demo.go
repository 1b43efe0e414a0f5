package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/kiln-dev/kiln/examples"
	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln demo: run the example project (examples/feed) with a synthetic event stream and print a user's features as they change",
		`usage: kiln demo [flags]

Loads a month of synthetic history, then pushes live events and prints the
features of user 1 until SIGINT or SIGTERM. The HTTP and gRPC APIs answer
meanwhile, as kiln serve's do.
`)
	addr := fs.String("addr", "127.0.0.1:7070", "HTTP listen address")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:7071", "gRPC listen address (empty: no gRPC)")
	adminAddr := fs.String("admin-addr", defaultAdminAddr, adminAddrHelp)
	data := fs.String("data", "", "data directory (default: a temporary one, removed on exit)")
	scale := fs.Float64("scale", 0.01, "RW1 scale factor (1 = 100,000 users and 1,000,000 posts)")
	history := fs.Int("history", 100_000, "events of history to load over the last 30 days")
	rate := fs.Float64("rate", 200, "live events per second")
	every := fs.Duration("every", 2*time.Second, "how often to print the features of user 1")
	seed := fs.Uint64("seed", 1, "workload seed")
	newLogger := logFlags(fs, "warn")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *rate <= 0 || *scale <= 0 || *history < 0 || *every <= 0 {
		return fmt.Errorf("%w: --rate, --scale and --every must be positive, --history not negative", cli.ErrUsage)
	}
	logger, err := newLogger(stderr)
	if err != nil {
		return err
	}
	gogc, memLimit := applyGCDefaults()
	logger.Info("garbage collector", "GOGC", gogc, "GOMEMLIMIT", memLimit, "note", "-1: left to the environment")
	project, err := projectfile.Parse(examples.FeedProjectName, examples.FeedProject)
	if err != nil {
		return err
	}
	dir := *data
	if dir == "" {
		if dir, err = os.MkdirTemp("", "kiln-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	arch, _, err := node.OpenArchive(ctx, "", project, dir)
	if err != nil {
		return err
	}
	cpus := admission.ReserveIntake() // as kiln serve does
	n, err := node.Start(node.Config{Project: project, DataDir: dir, Archive: arch, Addr: *addr, GRPCAddr: *grpcAddr, AdminAddr: *adminAddr, Logger: logger,
		Admission: admission.Config{CPUs: cpus}})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "\nkiln demo: stopping (writing what is buffered, closing the store)")
		if err := n.Close(); err != nil {
			fmt.Fprintln(stderr, "kiln demo:", err)
		}
	}()
	src := project.Source(workload.SourceName)
	if src == nil {
		return fmt.Errorf("the example project has no source %s", workload.SourceName)
	}
	gen := workload.NewGenerator(workload.Config{Seed: *seed, Scale: *scale, Now: time.Now(), HistoryEvents: *history})
	fmt.Fprintf(stdout, "kiln demo: project %s (%s), data in %s\n", project.Name, examples.FeedProjectName, dir)
	start := time.Now()
	loaded, err := loadHistory(ctx, n.Writer, src, gen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kiln demo: loaded %d events of history in %.1fs\n\n", loaded, time.Since(start).Seconds())
	fmt.Fprintf(stdout, "Kiln is serving on %s. Fetch features with:\n\n", n.URL())
	fmt.Fprintf(stdout, "  curl -s %s/v1/features -d '{\"service\": \"user_profile\", \"entities\": {\"user\": [{\"user_id\": 1}]}}'\n\n", n.URL())
	fmt.Fprintf(stdout, "  curl -s %s/v1/features -d '{\"features\": [\"post_engagement:views_5m\", \"post_engagement:likes_1h\"], \"entities\": {\"post\": [{\"post_id\": 1}, {\"post_id\": 2}]}}'\n\n", n.URL())
	if n.GRPCAddr != "" {
		fmt.Fprintf(stdout, "and over gRPC (docs/grpc.md):\n\n  grpcurl -plaintext -d '{\"service\": \"user_profile\", \"entities\": [{\"entity\": \"user\", \"keys\": [{\"field\": \"user_id\", \"int_values\": [1]}]}]}' %s kiln.v1.FeatureService/GetFeatures\n\n", n.GRPCAddr)
	}
	if n.AdminAddr != "" {
		fmt.Fprintf(stdout, "Metrics (Prometheus) are at %s/metrics.\n\n", n.AdminURL())
	}
	fmt.Fprintf(stdout, "Live events arrive at %.0f/s; user 1 (the busiest) every %s. Ctrl-C stops.\n\n", *rate, *every)
	return liveLoop(ctx, stdout, n, src, gen, *rate, *every)
}

// loadHistory pushes the generator's history through the write path.
func loadHistory(ctx context.Context, pl *ingest.Writer, src *definition.Source, gen *workload.Generator) (int, error) {
	const batch = 5000
	events := make([]event.Event, 0, batch)
	fields := make([]event.Value, 0, batch*len(src.Fields))
	mapping, err := fieldMapping(src)
	if err != nil {
		return 0, err
	}
	total := 0
	var pushErr error
	flush := func() bool {
		if len(events) == 0 {
			return true
		}
		if _, err := pl.Push(ctx, src, events); err != nil {
			pushErr = err
			return false
		}
		total += len(events)
		events, fields = events[:0], fields[:0]
		return true
	}
	gen.History(func(ev *event.Event) bool {
		if ctx.Err() != nil {
			pushErr = ctx.Err()
			return false
		}
		events = append(events, project(ev, mapping, &fields, len(src.Fields)))
		if len(events) == batch {
			return flush()
		}
		return true
	})
	if pushErr == nil {
		flush()
	}
	return total, pushErr
}

// fieldMapping maps the generator's fields onto the source schema.
func fieldMapping(src *definition.Source) ([]int, error) {
	m := make([]int, len(workload.FieldNames))
	for i, name := range workload.FieldNames {
		m[i] = src.FieldIndex(name)
		if m[i] < 0 {
			return nil, fmt.Errorf("source %s has no field %s", src.Name, name)
		}
	}
	return m, nil
}

// project copies a generated event into the source's field order, keeping
// the values in one shared slice.
func project(ev *event.Event, mapping []int, fields *[]event.Value, n int) event.Event {
	start := len(*fields)
	for range n {
		*fields = append(*fields, event.Value{})
	}
	out := (*fields)[start : start+n : start+n]
	for i, v := range ev.Fields {
		out[mapping[i]] = v
	}
	return event.Event{TS: ev.TS, Fields: out}
}

// liveLoop pushes live events at the rate and prints user 1's features.
func liveLoop(ctx context.Context, stdout io.Writer, n *node.Node, src *definition.Source, gen *workload.Generator, rate float64, every time.Duration) error {
	mapping, err := fieldMapping(src)
	if err != nil {
		return err
	}
	live := gen.Live(rate)
	const tick = 100 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	report := time.NewTicker(every)
	defer report.Stop()
	var (
		owed   float64
		pushed int
		ev     event.Event
		events []event.Event
		fields []event.Value
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-report.C:
			line, err := userLine(ctx, n.URL())
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			fmt.Fprintf(stdout, "%s  %7d live events  user 1: %s\n", time.Now().Format("15:04:05"), pushed, line)
		case <-ticker.C:
			owed += rate * tick.Seconds()
			events, fields = events[:0], fields[:0]
			for ; owed >= 1; owed-- {
				live.Next(time.Now(), &ev)
				events = append(events, project(&ev, mapping, &fields, len(src.Fields)))
			}
			if len(events) == 0 {
				continue
			}
			if _, err := n.Writer.Push(ctx, src, events); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			pushed += len(events)
		}
	}
}

// userLine fetches user 1's features over the HTTP API, as a client would.
func userLine(ctx context.Context, base string) (string, error) {
	body := []byte(`{"features": ["user_engagement:views_1h", "user_engagement:likes_1h", "user_engagement:views_24h", "user_engagement:dwell_mean_24h", "user_engagement:last_post"], "entities": {"user": [{"user_id": 1}]}}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/features", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Entities map[string][]struct {
			Features map[string]any `json:"features"`
		} `json:"entities"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("features request: %s: %s", resp.Status, out.Error)
	}
	f := out.Entities["user"][0].Features
	mean, _ := f["user_engagement:dwell_mean_24h"].(float64)
	return fmt.Sprintf("views_1h=%v likes_1h=%v views_24h=%v dwell_mean_24h=%.0f last_post=%v",
		f["user_engagement:views_1h"], f["user_engagement:likes_1h"], f["user_engagement:views_24h"], mean, f["user_engagement:last_post"]), nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/kiln-dev/kiln/internal/admission"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/spool"
)

// defaultAdminAddr is where the admin listener of kiln serve and kiln demo
// listens unless --admin-addr says otherwise: loopback, since it answers
// anyone who reaches it.
const defaultAdminAddr = "127.0.0.1:7072"

const adminAddrHelp = "admin listen address: /metrics, /debug/pprof/, /debug/rows and gRPC Diagnostics, /debug/stats, /healthz, /readyz; it answers anyone who reaches it, so keep it on loopback or a network only operators reach (empty: none)"

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln serve: serve a project: take its events (push API, Kafka, NATS) and answer its features over HTTP and gRPC",
		`usage: kiln serve [-c kiln.yaml] [flags]

Runs until SIGINT or SIGTERM, then writes what is buffered and closes the
store. docs/operations.md says how to run it, docs/api.md what it answers.
SIGHUP reads the token file and the TLS certificates again
(docs/security.md).

If a view's definition changed since its rows were written, kiln serve
refuses to start, says how it changed, and offers --rebuild (rebuild it
from the event archive while serving the other views), kiln rebuild (the
same, offline) or --reset-view NAME (start it empty). A view added to the
project is filled from the archive at start. See docs/definitions.md,
"Changing a definition".
`)
	config := configFlag(fs)
	data := fs.String("data", "kiln-data", "data directory: the embedded store, and the event archive's journal (created if missing)")
	archiveAt := fs.String("archive", "", "where the event archive keeps every accepted event: a directory, s3://BUCKET/PREFIX (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; ?endpoint=HOST:PORT for a store other than AWS), or none (default: DATA/archive with the embedded store, none with Redis)")
	archiveFlush := fs.Duration("archive-flush-interval", time.Minute, "longest time an accepted event waits in the journal (DATA/archive-journal) before it is written to the archive")
	role := fs.String("role", "all", "what this process does: all (ingest and serve), ingest (take events, write rows) or serve (read rows, answer features); ingest and serve need online_store type redis")
	addr := fs.String("addr", "127.0.0.1:7070", "HTTP listen address")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:7071", "gRPC listen address (empty: no gRPC)")
	adminAddr := fs.String("admin-addr", defaultAdminAddr, adminAddrHelp)
	rowCache := fs.Int64("row-cache-bytes", 0, "memory for the cache of rows (0: 256 MiB; negative: off)")
	blockCache := fs.Int64("block-cache-bytes", 0, "memory for the embedded store's block cache (0: 512 MiB; unused with Redis)")
	maxReads := fs.Int("max-concurrent-reads", 0, "admission control: feature reads running at once; more wait in a queue, refused with 429 / RESOURCE_EXHAUSTED once it stands (0: 1 per CPU with the embedded store, 4 per CPU with Redis; negative: off)")
	target := fs.Duration("admission-target", admission.DefaultTarget, "admission control: a queue of reads in which every read waits longer than this for --admission-interval is overload")
	interval := fs.Duration("admission-interval", admission.DefaultInterval, "admission control: how long reads may keep waiting longer than --admission-target before they are refused (shorter queues are bursts, and wait)")
	fs.Func("max-inflight-rows", "replaced by --max-concurrent-reads", func(string) error {
		return errors.New("--max-inflight-rows is gone: admission control now counts reads before their bodies are read; use --max-concurrent-reads N (0: the default; negative: off), see docs/operations.md, \"Overload\"")
	})
	partitions := fs.Int("partitions", 4, "single-writer partitions of the write path")
	writeRows := fs.Int("write-cache-rows", 0, "rows the write path keeps decoded in memory, over all partitions; rows beyond are read back from the store when next written (0: 65536 per partition)")
	writeThrough := fs.Bool("write-through", false, "embedded store: write every commit's rows to the store instead of logging the commit's events and writing rows back at checkpoints")
	checkpointEvery := fs.Duration("checkpoint-interval", time.Minute, "embedded store: longest time between checkpoints of a busy partition (rows written back, event log deleted)")
	checkpointRows := fs.Int("checkpoint-rows", 0, "embedded store: rows a partition holds not yet written back before it checkpoints (0: 65536); they stay in memory until then")
	checkpointLog := fs.Int64("checkpoint-log-bytes", 0, "embedded store: event log a partition appends before it checkpoints (0: 32 MiB); a restart after a crash replays up to this much per partition")
	rebuildViews := fs.Bool("rebuild", false, "rebuild the views whose definition changed from the event archive, serving the other views meanwhile (their features answer 503 until done)")
	var resets viewNames
	fs.Var(&resets, "reset-view", "start this view empty, its earlier rows no longer served (repeat the flag, or separate names with commas)")
	newLogger := logFlags(fs, "info")
	traceFlags := addTracingFlags(fs)
	sec := securityFlags(fs)
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *checkpointEvery <= 0 {
		return fmt.Errorf("--checkpoint-interval is %v: give a positive duration, like 1m", *checkpointEvery)
	}
	if *checkpointRows < 0 || *checkpointLog < 0 {
		return fmt.Errorf("--checkpoint-rows %d, --checkpoint-log-bytes %d: give 0 for the defaults or positive numbers", *checkpointRows, *checkpointLog)
	}
	if *writeRows < 0 {
		return fmt.Errorf("--write-cache-rows is %d: give 0 for the default (65536 per partition) or a number of rows", *writeRows)
	}
	if *target <= 0 || *interval <= 0 {
		return fmt.Errorf("%w: --admission-target %v, --admission-interval %v: give positive durations, like 10ms and 1s", cli.ErrUsage, *target, *interval)
	}
	if *blockCache < 0 {
		return fmt.Errorf("--block-cache-bytes is %d: give 0 for the default (512 MiB) or a size in bytes", *blockCache)
	}
	logger, err := newLogger(stderr)
	if err != nil {
		return err
	}
	gogc, memLimit := applyGCDefaults()
	logger.Info("garbage collector", "GOGC", gogc, "GOMEMLIMIT", memLimit, "note", "-1: left to the environment")
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	security, err := sec.load(logger, *addr, *grpcAddr)
	if err != nil {
		return err
	}
	nodeRole, err := node.ParseRole(*role)
	if err != nil {
		return err
	}
	if *archiveFlush <= 0 {
		return fmt.Errorf("%w: --archive-flush-interval is %v: give a positive duration, like 1m", cli.ErrUsage, *archiveFlush)
	}
	arch, archWhere, err := node.OpenArchive(ctx, *archiveAt, project, *data)
	if err != nil {
		return err
	}
	switch {
	case arch == nil && nodeRole != node.RoleServe:
		logger.Warn("events are not archived: a changed view cannot be rebuilt and no training set can be built; give --archive DIR or s3://BUCKET/PREFIX to keep them")
	case arch != nil:
		logger.Info("event archive", "at", archWhere)
	}
	tp, err := traceFlags.setup(ctx, nodeRole, logger)
	if err != nil {
		return err
	}
	defer traceFlags.shutdown(tp, logger)
	var tracer trace.TracerProvider // nil, not a nil *sdktrace.TracerProvider: off
	if tp != nil {
		tracer = tp
	}
	// From here on, SIGHUP reloads rather than ends the process.
	security.reloadOnHangup(ctx, logger)
	cpus := runtime.GOMAXPROCS(0)
	if nodeRole != node.RoleIngest && *maxReads >= 0 {
		// Admitted reads take one P per CPU at most; the spare P reads and
		// refuses requests while they run.
		cpus = admission.ReserveIntake()
	}
	logger.Info("scheduler", "CPUs", cpus, "GOMAXPROCS", runtime.GOMAXPROCS(0))
	n, err := node.Start(node.Config{
		Tracing: tracer,
		Journal: spool.Options{FlushInterval: *archiveFlush},
		Project: project, Role: nodeRole, DataDir: *data, Addr: *addr, GRPCAddr: *grpcAddr, AdminAddr: *adminAddr, Logger: logger,
		RowCacheBytes: *rowCache, CacheBytes: *blockCache,
		Admission:    admission.Config{MaxConcurrent: max(*maxReads, 0), CPUs: cpus, Target: *target, Interval: *interval},
		AdmissionOff: *maxReads < 0,
		Archive:      arch, Rebuild: *rebuildViews, ResetViews: resets,
		Tokens: security.tokens, TLS: security.tlsConfig(), HTTPTimeouts: sec.timeouts,
		Ingest: ingest.Options{Partitions: *partitions, MaxCachedRows: *writeRows / max(*partitions, 1), WriteThrough: *writeThrough,
			CheckpointInterval: *checkpointEvery, CheckpointRows: *checkpointRows, CheckpointLogBytes: int(*checkpointLog)},
	})
	if err != nil {
		return err
	}
	where := *data
	if project.OnlineStore.Type == definition.Redis {
		where = "redis " + strings.Join(project.OnlineStore.Addrs, ",")
	}
	fmt.Fprintf(stdout, "kiln: %s: serving project %s from %s on %s\n", n.Role, project.Name, where, n.URL())
	if n.GRPCAddr != "" {
		fmt.Fprintf(stdout, "kiln: gRPC on %s\n", n.GRPCAddr)
	}
	if n.AdminAddr != "" {
		fmt.Fprintf(stdout, "kiln: admin (metrics, profiler, diagnostics) on %s\n", n.AdminURL())
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "kiln: stopping (writing what is buffered, closing the store)")
	return n.Close()
}

// logFlags adds --log-level (default level) and --log-format to fs; the
// function it returns makes the logger they ask for, writing to w.
func logFlags(fs *flag.FlagSet, level string) func(w io.Writer) (*slog.Logger, error) {
	lvl := fs.String("log-level", level, "log level: debug (a line per request), info, warn, error")
	format := fs.String("log-format", "text", "log format: text (key=value) or json (one object a line)")
	return func(w io.Writer) (*slog.Logger, error) { return newLogger(w, *lvl, *format) }
}

// newLogger makes a logger of the level and format, writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: use debug, info, warn or error", cli.ErrUsage, level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: use text or json", cli.ErrUsage, format)
}

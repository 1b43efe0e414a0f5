package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/importer"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/progress"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tile"
)

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln import: load a source's history from files into the archive and the views' rows",
		`usage: kiln import [-c kiln.yaml] --source NAME [flags] FILE...   (flags before the files)

FILE is a Parquet (.parquet), CSV (.csv, with a header row) or JSON lines
(.jsonl, .ndjson) file of the source's events, or a glob of them ('*.csv').
Columns are the source's fields and its event-time field (epoch
milliseconds or RFC 3339), as in a push. Every row is checked first, and
nothing is imported if any is bad (each problem is listed as file:row:column)
unless --reject names a file for the bad rows.

Offline (the default) it writes to the data directory (--data) of a stopped
server; with --url it imports into a running server through its push API.
The events are archived and folded into the rows of the views whose windows
can still cover them. Importing a file again (or after an interruption)
counts each of its rows once. docs/archive.md has the details.
`)
	config := configFlag(fs)
	source := fs.String("source", "", "the source the files hold events of (may be left out when the project has one source)")
	data := fs.String("data", "kiln-data", "data directory of a stopped server to import into (offline)")
	archiveAt := fs.String("archive", "", "the event archive's location, as for kiln serve (default: DATA/archive with the embedded store)")
	serverURL := fs.String("url", "", "import into the running server at this URL (like http://127.0.0.1:7070) through its push API, instead of into --data; a server with --token-file takes a push token from the environment variable KILN_TOKEN")
	caFile := fs.String("ca-file", "", "with an https:// --url: the CA certificates (PEM) the server's certificate must chain to (default: the system's)")
	reject := fs.String("reject", "", "write the bad rows (file, row, problems: one JSON object per line) to this file and import the good ones, instead of importing nothing")
	batch := fs.Int("batch", 50_000, "events pushed at once")
	newLogger := logFlags(fs, "warn")
	if err := cli.ParseFlagsArgs(fs, args, math.MaxInt, stdout); err != nil {
		return err
	}
	if *batch <= 0 {
		return fmt.Errorf("%w: --batch %d: give a positive number of events", cli.ErrUsage, *batch)
	}
	files, err := expandFiles(fs.Args())
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr)
	if err != nil {
		return err
	}
	applyGCDefaults()
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	src, err := pickSource(project, *source)
	if err != nil {
		return err
	}
	plans, err := tile.CompileProject(project)
	if err != nil {
		return err
	}
	prog := progress.New(stderr, 0)
	opts := importer.Options{
		Project: project, Plans: plans, Source: src, Files: files, Reject: *reject,
		Now: time.Now().UnixMilli(), BatchEvents: *batch,
		Progress: func(phase string, done, total int64) { prog.Update(phase, done, total, true) },
	}
	var sum importer.Summary
	where := ""
	if *serverURL != "" {
		where = *serverURL
		hc := &http.Client{Timeout: 5 * time.Minute}
		if *caFile != "" {
			tlsCfg, err := client.LoadTLS(client.TLSFiles{CA: *caFile})
			if err != nil {
				return err
			}
			hc.Transport = &http.Transport{TLSClientConfig: tlsCfg}
		}
		sum, err = importer.Run(ctx, &importer.HTTPPusher{URL: *serverURL, Client: hc, Token: os.Getenv("KILN_TOKEN")}, opts)
	} else {
		where = *data
		arch, _, aerr := node.OpenArchive(ctx, *archiveAt, project, *data)
		if aerr != nil {
			return aerr
		}
		if arch == nil {
			logger.Warn("no archive: the events go into the views' rows only; give --archive to keep them")
		}
		off, oerr := node.OpenOffline(node.Config{Project: project, DataDir: *data, Archive: arch, Logger: logger})
		if oerr != nil {
			return oerr
		}
		sum, err = importer.Run(ctx, importer.WriterPusher{W: off.Writer}, opts)
		if cerr := off.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	prog.Finish()
	if err != nil {
		if sum.Rows > 0 {
			fmt.Fprintf(stdout, "kiln import: stopped after %d rows of %d files; what was pushed stays, and importing the files again passes over it\n", sum.Rows, sum.Files)
		}
		return err
	}
	fmt.Fprintf(stdout, "kiln import: %d rows of %d files into %s in %.1f s (%.0f rows/s): %d events reached %d rows of the views, %d were too old for every view's windows (archived only)",
		sum.Rows, sum.Files, where, sum.Seconds, float64(sum.Rows)/max(sum.Seconds, 1e-9), sum.Accepted, sum.RowsTouched, sum.DroppedLate)
	if *reject != "" {
		fmt.Fprintf(stdout, "; %d bad rows written to %s", sum.Rejected, *reject)
	}
	fmt.Fprintln(stdout)
	return nil
}

// expandFiles expands globs (for shells that leave them, and quoted ones)
// and refuses a pattern that matches nothing.
func expandFiles(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: name the files to import", cli.ErrUsage)
	}
	var files []string
	for _, a := range args {
		if !strings.ContainsAny(a, "*?[") {
			if _, err := os.Stat(a); err != nil {
				return nil, err
			}
			files = append(files, a)
			continue
		}
		m, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("%w: pattern %q: %v", cli.ErrUsage, a, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("no file matches %q", a)
		}
		files = append(files, m...)
	}
	return files, nil
}

// pickSource returns the source named, or the project's only source.
func pickSource(p *definition.Project, name string) (*definition.Source, error) {
	if name == "" {
		if len(p.Sources) == 1 {
			return p.Sources[0], nil
		}
		var names []string
		for _, s := range p.Sources {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("%w: say which source the files hold with --source (one of %s)", cli.ErrUsage, strings.Join(names, ", "))
	}
	if s := p.Source(name); s != nil {
		return s, nil
	}
	var names []string
	for _, s := range p.Sources {
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("%w: project %s has no source %q (its sources: %s)", cli.ErrUsage, p.Name, name, strings.Join(names, ", "))
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
	"github.com/kiln-dev/kiln/internal/progress"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/rebuild"
)

func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln rebuild: rebuild views from the event archive, offline, after their definition changed",
		`usage: kiln rebuild [-c kiln.yaml] --data DIR --view NAME [--view NAME ...] [flags]

Starts the named views' rows afresh and replays the event archive of each
view's source into them, from the oldest event time the view's windows
need, through the write path; the other views are left as they are. Run it
with the server stopped; kiln serve then starts on the rebuilt views. Views
added to the project, and views whose last rebuild did not finish, are
rebuilt too. A view that changed and is not named is refused: name it with
--view, or start it empty with --reset-view. Ctrl-C stops the rebuild; the
next kiln rebuild or kiln serve starts it again. docs/definitions.md says
what happens on each kind of change.
`)
	config := configFlag(fs)
	data := fs.String("data", "kiln-data", "data directory of the embedded store (unused with Redis)")
	archiveAt := fs.String("archive", "", "the event archive, as for kiln serve: a directory or s3://BUCKET/PREFIX (default: DATA/archive)")
	var views, resets viewNames
	fs.Var(&views, "view", "a view to rebuild (repeat the flag, or separate names with commas)")
	fs.Var(&resets, "reset-view", "a view to start empty instead (repeat the flag, or separate names with commas)")
	partitions := fs.Int("partitions", 4, "single-writer partitions of the write path")
	newLogger := logFlags(fs, "info")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if len(views) == 0 && len(resets) == 0 {
		return fmt.Errorf("%w: name a view to rebuild: --view NAME", cli.ErrUsage)
	}
	logger, err := newLogger(stderr)
	if err != nil {
		return err
	}
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	arch, _, err := node.OpenArchive(ctx, *archiveAt, project, *data)
	if err != nil {
		return err
	}
	if arch == nil {
		return fmt.Errorf("%w: a rebuild replays the event archive: give its location with --archive DIR or s3://BUCKET/PREFIX", cli.ErrUsage)
	}
	// The log says the progress every few seconds; a terminal gets a bar too.
	bar := progress.NewBar(stderr)
	sums, err := node.Rebuild(ctx, node.RebuildConfig{
		Project: project, DataDir: *data, Archive: arch, Views: views, ResetViews: resets,
		Ingest: ingest.Options{Partitions: *partitions}, Logger: logger, Progress: func(p rebuild.Progress) {
			bar.Update("rebuilding "+p.View+" (archived dates)", int64(p.DatesDone), int64(p.DatesTotal), false)
		},
	})
	bar.Finish()
	for _, s := range sums {
		fmt.Fprintf(stdout, "kiln: %s\n", s)
	}
	if err != nil {
		return err
	}
	if len(sums) == 0 {
		fmt.Fprintln(stdout, "kiln: no view rebuilt")
	}
	return nil
}

// viewNames is a flag of view names, repeated or separated by commas.
type viewNames []string

func (v *viewNames) String() string { return strings.Join(*v, ",") }

func (v *viewNames) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*v = append(*v, name)
		}
	}
	return nil
}

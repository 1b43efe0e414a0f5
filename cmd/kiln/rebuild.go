package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/node"
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
	archiveDir := fs.String("archive", "", "directory of the event archive (default: archive under --data)")
	var views, resets viewNames
	fs.Var(&views, "view", "a view to rebuild (repeat the flag, or separate names with commas)")
	fs.Var(&resets, "reset-view", "a view to start empty instead (repeat the flag, or separate names with commas)")
	partitions := fs.Int("partitions", 4, "single-writer partitions of the write path")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := cli.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if len(views) == 0 && len(resets) == 0 {
		return fmt.Errorf("%w: name a view to rebuild: --view NAME", cli.ErrUsage)
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	arch, err := openArchive(*archiveDir, *data, true)
	if err != nil {
		return err
	}
	bar := newProgress(stderr)
	sums, err := node.Rebuild(ctx, node.RebuildConfig{
		Project: project, DataDir: *data, Archive: arch, Views: views, ResetViews: resets,
		Ingest: ingest.Options{Partitions: *partitions}, Logger: logger, Progress: bar.update,
	})
	bar.finish()
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

// openArchive opens the event archive in dir, or in the directory archive
// under data when dir is empty. Without an explicit dir and with none under
// data, it returns nil (no archive), or an error when one is required.
func openArchive(dir, data string, required bool) (*archive.Archive, error) {
	if dir == "" {
		dir = filepath.Join(data, "archive")
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if required {
				return nil, fmt.Errorf("no event archive in %s: give its directory with --archive DIR", dir)
			}
			return nil, nil
		}
	}
	b, err := archive.NewDir(dir)
	if err != nil {
		return nil, err
	}
	return archive.New(b), nil
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

// progress draws a bar per view being rebuilt, in archived dates, when w
// is a terminal; elsewhere the log's progress lines say as much.
type progress struct {
	w    io.Writer
	tty  bool
	view string
	bar  *progressbar.ProgressBar
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) update(pr rebuild.Progress) {
	if !p.tty {
		return
	}
	if p.bar == nil || p.view != pr.View {
		p.finish()
		p.view = pr.View
		p.bar = progressbar.NewOptions(max(pr.DatesTotal, 1),
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("rebuilding "+pr.View),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("dates"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Describe(fmt.Sprintf("rebuilding %s: %d events", pr.View, pr.Replayed))
	p.bar.Set(pr.DatesDone)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

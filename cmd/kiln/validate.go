package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/tile"
)

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kiln validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.SetUsage(fs, "kiln validate: check a project file and print the tile plan of each view",
		`usage: kiln validate [FILE]
       kiln validate -c FILE

FILE is the project file (default: kiln.yaml). Every error is listed with
its line; the exit code is 1 if there is any.
`)
	config := configFlag(fs)
	if err := cli.ParseFlagsArgs(fs, args, 1, stdout); err != nil {
		return err
	}
	if fs.NArg() == 1 {
		if flagSet(fs, "c") || flagSet(fs, "config") {
			return fmt.Errorf("%w: the project file is given twice (%s and %s): give it once", cli.ErrUsage, *config, fs.Arg(0))
		}
		*config = fs.Arg(0)
	}
	project, err := projectfile.Load(*config)
	if err != nil {
		return err
	}
	plans, err := tile.CompileProject(project)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: project %s is valid: %d entities, %d sources, %d views, %d services\n",
		*config, project.Name, len(project.Entities), len(project.Sources), len(project.Views), len(project.Services))
	for _, v := range project.Views {
		printPlan(stdout, plans[v])
	}
	return nil
}

// configFlag defines the project file's flag, -c and its long form
// --config, and returns its value.
func configFlag(fs *flag.FlagSet) *string {
	config := fs.String("config", "kiln.yaml", "project file")
	fs.StringVar(config, "c", "kiln.yaml", "project file (short for --config)")
	return config
}

// flagSet says whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// printPlan writes a view's tile plan: per window its hop, the tiles an
// evaluation reads and the worst-case deviation, then the row size.
func printPlan(w io.Writer, p *tile.Plan) {
	v := p.View
	fmt.Fprintf(w, "\nview %s (entity %s, source %s): %d served values\n", v.Name, v.Entity.Name, v.Source.Name, len(p.Outputs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  window\ttile size (hop)\ttiles read\tspan covered\tmax deviation\tfeatures")
	for li, l := range p.Levels {
		var names []string
		spelling := ""
		for _, o := range p.Outputs {
			if o.Level == li {
				names = append(names, o.Ref.Feature.Name)
				if spelling == "" {
					spelling = o.Ref.WindowName
				}
			}
		}
		if l.Window.IsAllTime() {
			fmt.Fprintf(tw, "  all time\t-\t1\tevery event\t0\t%s\n", strings.Join(names, ", "))
			continue
		}
		length := time.Duration(l.Window.Length) * time.Millisecond
		hop := time.Duration(l.Window.Hop) * time.Millisecond
		fmt.Fprintf(tw, "  %s\t%s\t%d\t[%s, %s)\t%.1f%%\t%s\n",
			spelling, definition.FormatWindow(hop), l.Window.TilesRead(),
			spelling, definition.FormatWindow(length+hop), 100*l.Window.Deviation(), strings.Join(names, ", "))
	}
	tw.Flush()
	empty, full := p.RowBytes()
	retention := "none (all-time features keep every event)"
	if r := p.Retention(); r > 0 {
		retention = definition.FormatWindow(time.Duration(r) * time.Millisecond)
	}
	fmt.Fprintf(w, "  bytes per row (one entity): %d with no events, %d when active in every tile (events from the future add theirs until their time)\n", empty, full)
	fmt.Fprintf(w, "  late-event horizon: %s\n", retention)
}

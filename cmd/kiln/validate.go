package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/metadata"
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
	return metadata.Describe(project, plans).WriteText(stdout, *config)
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

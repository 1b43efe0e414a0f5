package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// modulePath is Kiln's Go module: a go.mod that declares it marks the
// root of Kiln's source tree.
const modulePath = "github.com/kiln-dev/kiln"

// kilnBinary returns the kiln executable the benchmarks start, in this
// order: path if not empty; inside Kiln's source tree (the working
// directory or a parent holds Kiln's go.mod), ./cmd/kiln built into a
// temporary directory; a kiln beside this executable; a kiln on PATH.
// cleanup removes what it built; call it once the servers have stopped.
func kilnBinary(path string, log io.Writer) (bin string, cleanup func(), err error) {
	nothing := func() {}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", nothing, fmt.Errorf("--kiln: %w", err)
		}
		return path, nothing, nil
	}
	if wd, err := os.Getwd(); err == nil {
		if root := sourceRoot(wd); root != "" {
			tmp, err := os.MkdirTemp("", "kiln-bench-bin-")
			if err != nil {
				return "", nothing, err
			}
			cleanup := func() { os.RemoveAll(tmp) }
			bin, err := buildServer(root, tmp, log)
			if err != nil {
				cleanup()
				return "", nothing, err
			}
			return bin, cleanup, nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "kiln")
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
			return beside, nothing, nil
		}
	}
	if p, err := exec.LookPath("kiln"); err == nil {
		return p, nothing, nil
	}
	return "", nothing, errors.New(`no kiln binary to start the servers with: give one with --kiln, run kiln-bench inside Kiln's source tree (it builds ./cmd/kiln), or put kiln beside kiln-bench or on PATH`)
}

// sourceRoot returns the directory, dir or a parent, whose go.mod declares
// Kiln's module; "" if there is none.
func sourceRoot(dir string) string {
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
					f.Close()
					if strings.Trim(strings.TrimSpace(rest), `"`) == modulePath {
						return dir
					}
					return ""
				}
			}
			f.Close()
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// buildServer builds root's ./cmd/kiln into dir and returns the binary's path.
func buildServer(root, dir string, log io.Writer) (string, error) {
	bin := filepath.Join(dir, "kiln")
	fmt.Fprintf(log, "kiln-bench: building ./cmd/kiln of %s\n", root)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kiln")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ./cmd/kiln (give a binary with --kiln instead): %v\n%s", err, out)
	}
	return bin, nil
}

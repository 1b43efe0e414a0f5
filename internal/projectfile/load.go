// Package projectfile reads and checks a project file (the YAML a Kiln
// project is declared in) and resolves it into a definition.Project: every
// reference resolves, every aggregation has a field of a type it can
// aggregate, every window is in range.
//
// Load or Parse return the *definition.Project, or an *Errors listing every
// problem found, each with the file, line and what to write instead.
package projectfile

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
)

// Limits of the project file syntax.
const (
	// NameMaxLen is the longest name (of a project, entity, source, field,
	// view, feature or service).
	NameMaxLen = 64
	// MaxFutureSkewMax bounds max_future_skew.
	MaxFutureSkewMax = 24 * time.Hour
)

// Error is one problem in a project file, at a position of the file.
type Error struct {
	File string
	// Line and Column are 1-based; 0 when unknown.
	Line, Column int
	// Msg says what is wrong and what to write instead.
	Msg string
}

// Error formats e as "file:line:col: msg".
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Errors is every problem found in a project file, in file order.
type Errors struct {
	List []*Error
}

// Error returns one line per problem.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, err := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, err := range e.List {
		errs[i] = err
	}
	return errs
}

// Load reads, parses and checks the project file at path. Problems in the
// file are returned as *Errors.
func Load(path string) (*definition.Project, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read project file: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and checks a project file; file names it in messages. It
// returns the resolved project, or an *Errors listing every problem found.
func Parse(file string, data []byte) (*definition.Project, error) {
	l := &loader{file: file}
	p := l.project(data)
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i], l.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		return nil, &Errors{List: l.errs}
	}
	p.File = file
	return p, nil
}

// pos is a position in the file.
type pos struct{ line, col int }

func (p pos) String() string { return "line " + strconv.Itoa(p.line) }

type loader struct {
	file string
	errs []*Error
	// broken holds, per source, the fields declared with an invalid type:
	// they are reported once, where declared, and not again where used.
	broken map[*definition.Source]map[string]bool
}

// isBroken reports whether name is a field of src declared with an invalid
// type.
func (l *loader) isBroken(src *definition.Source, name string) bool {
	return l.broken[src][name]
}

func (l *loader) errorf(p pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) markBroken(src *definition.Source, name string) {
	if l.broken == nil {
		l.broken = map[*definition.Source]map[string]bool{}
	}
	if l.broken[src] == nil {
		l.broken[src] = map[string]bool{}
	}
	l.broken[src][name] = true
}

package eventfile

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
	"github.com/kiln-dev/kiln/internal/projectfile"
)

// testProject has one source, clicks, whose events must carry user_id: the
// key of the entity its view feeds.
const testProject = `
project: t
entities:
  user: {keys: [user_id]}
sources:
  clicks:
    type: push
    event_time: ts
    fields: {user_id: int64, kind: string, amount: float64, n: int64, ok: bool}
views:
  by_user: {entity: user, source: clicks, features: {n: {agg: count, windows: [1h]}}}
`

// now is the clock of every test: event times up to a minute after it are
// accepted.
var now = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixMilli()

func testSource(t testing.TB) (*eventjson.Decoder, *definition.Source) {
	t.Helper()
	p, err := projectfile.Parse("test.yaml", []byte(testProject))
	if err != nil {
		t.Fatal(err)
	}
	src := p.Source("clicks")
	var names []string
	for _, f := range src.Fields {
		names = append(names, f.Name+":"+f.Type.String())
	}
	if got := strings.Join(names, " "); got != "user_id:int64 kind:string amount:float64 n:int64 ok:bool" {
		t.Fatalf("source clicks has fields %s", got)
	}
	return eventjson.NewDecoder(p), src
}

// inTempDir makes a temporary directory the working directory, so that
// files are named in messages as the test names them.
func inTempDir(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// result is what Read gave for a file: the events of the valid rows (as
// strings, with their row), one string per problem, and Read's error.
type result struct {
	events   []string
	problems []string
	err      error
}

func read(t testing.TB, path string, opts Options) result {
	t.Helper()
	dec, src := testSource(t)
	if opts.Now == 0 {
		opts.Now = now
	}
	var res result
	res.err = Read(context.Background(), path, dec, src, opts, func(row int, ev *event.Event, problems []Problem) error {
		if (ev == nil) == (len(problems) == 0) {
			t.Fatalf("row %d: event %v with problems %v", row, ev, problems)
		}
		if ev != nil {
			checkEvent(t, src, dec.KeyFields(src), ev)
			res.events = append(res.events, strconv.Itoa(row)+" "+ev.String())
		}
		for _, p := range problems {
			if p.Row != row {
				t.Fatalf("row %d has a problem of row %d: %v", row, p.Row, p)
			}
			res.problems = append(res.problems, p.Error())
		}
		return nil
	})
	return res
}

// checkEvent fails the test if ev is not an event src accepts: every field
// of its type or null, key fields not null, no NaN, the time in range.
func checkEvent(t testing.TB, src *definition.Source, keys []bool, ev *event.Event) {
	t.Helper()
	if len(ev.Fields) != len(src.Fields) {
		t.Fatalf("event has %d fields, source %s %d", len(ev.Fields), src.Name, len(src.Fields))
	}
	for i, v := range ev.Fields {
		if v.Kind != event.Null && v.Kind != src.Fields[i].Type {
			t.Fatalf("field %s of type %v holds %v", src.Fields[i].Name, src.Fields[i].Type, v)
		}
		if v.Kind == event.Null && keys[i] {
			t.Fatalf("key field %s is null", src.Fields[i].Name)
		}
		if err := v.Valid(); err != nil {
			t.Fatalf("field %s: %v", src.Fields[i].Name, err)
		}
	}
	if ev.TS < src.MinEventTime || ev.TS > now+src.MaxFutureSkew.Milliseconds() {
		t.Fatalf("event time %d accepted", ev.TS)
	}
}

func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n  got  %q\n  want %q", what, got, want)
	}
}

// errorLines are the lines of err's message; nil for no error.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestFormatOf(t *testing.T) {
	for path, want := range map[string]Format{
		"a.parquet": Parquet, "dir.x/A.PARQUET": Parquet, "a.csv": CSV, "a.CSV": CSV,
		"a.jsonl": JSONLines, "a.ndjson": JSONLines, "a.json": JSONLines,
	} {
		if got, err := FormatOf(path); got != want || err != nil {
			t.Errorf("FormatOf(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
	for path, want := range map[string]string{
		"a.csv.gz": "a.csv.gz: .gz files cannot be read; name the file for its format: .parquet, .csv, .jsonl, .ndjson, .json (JSON lines)",
		"events":   "events: no file extension to tell its format by; name it for its format: .parquet, .csv, .jsonl, .ndjson, .json (JSON lines)",
	} {
		if _, err := FormatOf(path); err == nil || err.Error() != want {
			t.Errorf("FormatOf(%q): %v\n  want %s", path, err, want)
		}
	}
}

func TestProblemError(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{"a.csv", 3, "n", "bad"}, "a.csv:3:n: bad"},
		{Problem{"a.csv", 3, "", "bad"}, "a.csv:3: bad"},
		{Problem{"a.parquet", 0, "n", "bad"}, "a.parquet: column n: bad"},
		{Problem{"a.parquet", 0, "", "bad"}, "a.parquet: bad"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

// Read refuses what it cannot read before it reads a row.
func TestReadRefuses(t *testing.T) {
	inTempDir(t)
	writeFile(t, "ok.csv", "ts,user_id\n1795600000000,1\n")
	dec, src := testSource(t)
	never := func(int, *event.Event, []Problem) error { t.Fatal("fn called"); return nil }
	for _, tc := range []struct {
		path string
		opts Options
		want string
	}{
		{"ok.csv", Options{}, "eventfile: Options.Now is not set: pass the clock in Unix milliseconds"},
		{"ok.csv", Options{Now: now, MaxLineBytes: -1}, "eventfile: Options.MaxLineBytes is -1"},
		{"missing.csv", Options{Now: now}, "open missing.csv: no such file or directory"},
		{"ok.txt", Options{Now: now}, "ok.txt: .txt files cannot be read; name the file for its format: .parquet, .csv, .jsonl, .ndjson, .json (JSON lines)"},
	} {
		if err := Read(context.Background(), tc.path, dec, src, tc.opts, never); err == nil || err.Error() != tc.want {
			t.Errorf("Read(%s): %v\n  want %s", tc.path, err, tc.want)
		}
	}
	if err := os.Mkdir("dir.csv", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Read(context.Background(), "dir.csv", dec, src, Options{Now: now}, never); err == nil || err.Error() != "dir.csv: is a directory; name the files to read" {
		t.Errorf("Read(dir.csv): %v", err)
	}
}

// fn's error, and the context's, stop Read and come back as they are;
// progress is reported, last with done == total.
func TestReadStopsAndReports(t *testing.T) {
	inTempDir(t)
	var b strings.Builder
	b.WriteString("ts,user_id\n")
	for i := range 5000 {
		b.WriteString("1795600000000," + strconv.Itoa(i) + "\n")
	}
	writeFile(t, "many.csv", b.String())
	writeFile(t, "many.jsonl", strings.Repeat(`{"ts": 1795600000000, "user_id": 1}`+"\n", 5000))
	writeParquetFile(t, "many.parquet", []pcol{{"ts", parquet64()}, {"user_id", parquet64()}}, repeatRows([]any{int64(1795600000000), int64(1)}, 5000))
	dec, src := testSource(t)
	stop := errors.New("stop")
	for _, path := range []string{"many.csv", "many.jsonl", "many.parquet"} {
		n := 0
		err := Read(context.Background(), path, dec, src, Options{Now: now}, func(int, *event.Event, []Problem) error {
			if n++; n == 10 {
				return stop
			}
			return nil
		})
		if err != stop || n != 10 {
			t.Errorf("%s: fn's error: Read returned %v after %d rows", path, err, n)
		}

		ctx, cancel := context.WithCancel(context.Background())
		n = 0
		err = Read(ctx, path, dec, src, Options{Now: now}, func(int, *event.Event, []Problem) error {
			if n++; n == 10 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || n >= 5000 {
			t.Errorf("%s: cancelled: Read returned %v after %d rows", path, err, n)
		}

		var reports [][2]int64
		err = Read(context.Background(), path, dec, src, Options{Now: now, Progress: func(done, total int64) {
			reports = append(reports, [2]int64{done, total})
		}}, func(int, *event.Event, []Problem) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		last := reports[len(reports)-1]
		if len(reports) < 2 || len(reports) > 10 || last[0] != last[1] {
			t.Errorf("%s: progress %v", path, reports)
		}
		for i := 1; i < len(reports); i++ {
			if reports[i][0] <= reports[i-1][0] {
				t.Errorf("%s: progress goes back: %v", path, reports)
			}
		}
	}
}

package eventfile

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/kiln-dev/kiln/internal/event"
)

// Tests of the text formats, CSV and JSON lines.

func TestReadCSV(t *testing.T) {
	inTempDir(t)
	// Columns in any order, some left out; a byte order mark; CRLF; quoted
	// cells; empty cells are null; both ways of writing the time.
	writeFile(t, "good.csv", "\uFEFFkind,ts,user_id,amount,ok\r\n"+
		"view,1795600000000,1,1.5,true\r\n"+
		`"a, ""quoted""",2026-11-26T09:59:00Z,-2,,false`+"\r\n"+
		"\r\n"+ // blank lines are skipped
		`"two`+"\n"+`lines",2026-11-26T10:59:00.250+01:00,3,1e3,`+"\n"+
		",1795600000000,4,-0.25,\n")
	res := read(t, "good.csv", Options{})
	if res.err != nil || len(res.problems) > 0 {
		t.Fatalf("%v %v", res.err, res.problems)
	}
	same(t, "events", res.events, []string{
		`2 {ts:1795600000000 1 "view" 1.5 null true}`,
		`3 {ts:1795687140000 -2 "a, \"quoted\"" null null false}`,
		`5 {ts:1795687140250 3 "two\nlines" 1000 null null}`,
		`7 {ts:1795600000000 4 null -0.25 null null}`,
	})
}

// Each kind of bad row gives its problems, placed at line and column and
// worded as the push API words them; the rows around it are read.
func TestReadCSVProblems(t *testing.T) {
	inTempDir(t)
	writeFile(t, "bad.csv", strings.Join([]string{
		"ts,user_id,kind,amount,n,ok",
		"1795600000000,1,a,1.5,2,true",
		"1795600000000,1.5,a,x,2,yes",                // 2 type problems
		"1795600000000,,a,,,",                        // null key
		",1,a,,,",                                    // no time
		"1765000000,1,a,,,",                          // seconds
		"2026-11-26T10:05:00Z,1,a,,,",                // future
		"2026-11-26,1,a,,,",                          // not RFC 3339
		"1795600000000,1,a,NaN,9223372036854775808,", // NaN, out of range
		"1795600000000,1,a",                          // ragged
		`1795600000000,1,a "b,,,`,                    // bare quote
		"1795600000000,2,b,,,",
	}, "\n")+"\n")
	res := read(t, "bad.csv", Options{})
	if res.err != nil {
		t.Fatal(res.err)
	}
	same(t, "events", res.events, []string{
		`2 {ts:1795600000000 1 "a" 1.5 2 true}`,
		`12 {ts:1795600000000 2 "b" null null null}`,
	})
	same(t, "problems", res.problems, []string{
		`bad.csv:3:user_id: 1.5 is not an int64: write an integer like 42`,
		`bad.csv:3:amount: "x" is not a float64: write a number like 4.5`,
		`bad.csv:3:ok: "yes" is not a bool: write true or false`,
		`bad.csv:4:user_id: is a key field and cannot be null`,
		`bad.csv:5:ts: missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`,
		`bad.csv:6:ts: event time 1765000000 is before 2000-01-01 (min_event_time of source clicks); it looks like seconds since 1970: send milliseconds (1765000000000)`,
		`bad.csv:7:ts: event time 2026-11-26T10:05:00Z is more than 1m0s ahead of the server clock (2026-11-26T10:00:00Z); fix the producer's clock or raise max_future_skew of source clicks`,
		`bad.csv:8:ts: "2026-11-26" is not an RFC 3339 time; write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`,
		`bad.csv:9:amount: "NaN" is not a float64: write a number like 4.5`,
		`bad.csv:9:n: 9223372036854775808 is out of the int64 range`,
		`bad.csv:10: 3 cells, but the header (line 1) names 6 columns; quote a cell that holds a comma`,
		`bad.csv:11: malformed CSV at line 11, character 19: bare " in non-quoted-field`,
	})
}

// A header that does not fit the source refuses the file, with every
// problem of it, before any row.
func TestReadCSVHeader(t *testing.T) {
	inTempDir(t)
	f := func(content string, want ...string) {
		t.Helper()
		writeFile(t, "h.csv", content)
		res := read(t, "h.csv", Options{})
		if len(res.events)+len(res.problems) > 0 {
			t.Errorf("%q: rows read: %v %v", content, res.events, res.problems)
		}
		same(t, content, errorLines(res.err), want)
	}
	f("ts,user_id,color,kind,kind,\n1795600000000,1,red,a,a,\n",
		`h.csv:1:color: not a field of source clicks (fields: user_id, kind, amount, n, ok, and ts for the event time)`,
		`h.csv:1:kind: given twice`,
		`h.csv:1: column 6 has no name: the header row names every column`)
	f("ts, user_id\n1795600000000,1\n",
		`h.csv:1: user_id: " user_id" has spaces around it: the header names each column exactly as its field`,
		`h.csv:1:user_id: missing: it is a key field of a view fed by source clicks`)
	f("user_id,kind\n1,a\n",
		`h.csv:1:ts: missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`)
	f("ts,kind\n1795600000000,a\n",
		`h.csv:1:user_id: missing: it is a key field of a view fed by source clicks`)
	f("", `h.csv: the file is empty: a CSV file starts with a header row naming its columns, from ts, user_id, kind, amount, n, ok`)
	f("\n\n", `h.csv: the file is empty: a CSV file starts with a header row naming its columns, from ts, user_id, kind, amount, n, ok`)
	f(`ts,"user_id`+"\n", `h.csv:1: malformed CSV header at character 13: extraneous or missing " in quoted-field`)
}

func TestReadJSONLines(t *testing.T) {
	inTempDir(t)
	writeFile(t, "good.jsonl", strings.Join([]string{
		`{"user_id": 1, "kind": "view", "amount": 1.5, "ok": true, "ts": 1795600000000}`,
		``,
		`  {"ts": "2026-11-26T09:59:00Z", "user_id": -2, "kind": "", "n": null}  ` + "\r",
		`{"user_id": 3, "ts": 1795600000000, "kind": "a\u00e9\n"}`,
	}, "\n")) // no final newline
	res := read(t, "good.jsonl", Options{})
	if res.err != nil || len(res.problems) > 0 {
		t.Fatalf("%v %v", res.err, res.problems)
	}
	same(t, "events", res.events, []string{
		`1 {ts:1795600000000 1 "view" 1.5 null true}`,
		`3 {ts:1795687140000 -2 "" null null null}`,
		`4 {ts:1795600000000 3 "aé\n" null null null}`,
	})

	writeFile(t, "bad.jsonl", strings.Join([]string{
		`{"user_id": 1, "ts": 1795600000000}`,
		`{"user_id": 1.5, "ts": 1765000000, "color": "red"}`,
		`{"user_id": null, "kind": 3}`,
		`{"user_id": 1, "ts": 1795600000000`,
		`[1]`,
		`{"user_id": 2, "ts": 1795600000000}`,
	}, "\n")+"\n")
	res = read(t, "bad.jsonl", Options{})
	if res.err != nil {
		t.Fatal(res.err)
	}
	same(t, "events", res.events, []string{
		`1 {ts:1795600000000 1 null null null null}`,
		`6 {ts:1795600000000 2 null null null null}`,
	})
	same(t, "problems", res.problems, []string{
		`bad.jsonl:2:user_id: 1.5 is not an int64: write an integer like 42`,
		`bad.jsonl:2:ts: event time 1765000000 is before 2000-01-01 (min_event_time of source clicks); it looks like seconds since 1970: send milliseconds (1765000000000)`,
		`bad.jsonl:2:color: not a field of source clicks (fields: user_id, kind, amount, n, ok, and ts for the event time)`,
		`bad.jsonl:3:user_id: is a key field and cannot be null`,
		`bad.jsonl:3:kind: 3 is not a string: write it in double quotes`,
		`bad.jsonl:3:ts: missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`,
		`bad.jsonl:4: malformed JSON at byte 34: unexpected end of JSON input`,
		`bad.jsonl:5: an event must be a JSON object of fields`,
	})

	// A JSON array is not JSON lines: said once, for the file.
	writeFile(t, "array.json", "\n[\n"+`{"user_id": 1, "ts": 1795600000000}`+"\n]\n")
	res = read(t, "array.json", Options{})
	same(t, "array", errorLines(res.err), []string{
		`array.json:2: a JSON array: this reads JSON lines, one event object per line (jq -c '.[]' turns an array into that)`,
	})
}

// A line longer than MaxLineBytes is a problem of its row; the rows after
// it are read.
func TestReadLongLine(t *testing.T) {
	inTempDir(t)
	long := strings.Repeat("x", 100)
	writeFile(t, "long.csv", "ts,user_id,kind\n1795600000000,1,"+long+"\n1795600000000,2,"+long[:60]+"\n"+
		`1795600000000,3,"`+long+"\n"+long[:10]+`"`+"\n1795600000000,4,a\n")
	res := read(t, "long.csv", Options{MaxLineBytes: 80})
	same(t, "events", res.events, []string{
		`3 {ts:1795600000000 2 "` + long[:60] + `" null null null}`,
		`6 {ts:1795600000000 4 "a" null null null}`,
	})
	same(t, "problems", res.problems, []string{
		`long.csv:2: line is longer than 80 bytes, the most a line may hold; it was skipped`,
		// A long line in a quoted cell: the rest of the cell is out of
		// step.
		`long.csv:4: line is longer than 80 bytes, the most a line may hold; it was skipped`,
		`long.csv:5: malformed CSV at line 5, character 11: bare " in non-quoted-field`,
	})
	if res.err != nil {
		t.Fatal(res.err)
	}

	writeFile(t, "long.jsonl", `{"user_id": 1, "ts": 1795600000000, "kind": "`+long+`"}`+"\n"+`{"user_id": 2, "ts": 1795600000000}`+"\n")
	res = read(t, "long.jsonl", Options{MaxLineBytes: 80})
	same(t, "events", res.events, []string{`2 {ts:1795600000000 2 null null null null}`})
	same(t, "problems", res.problems, []string{`long.jsonl:1: line is longer than 80 bytes, the most a line may hold; it was skipped`})

	// A line of exactly MaxLineBytes is read.
	line := `{"user_id": 1, "ts": 1795600000000, "kind": "` + long[:33] + `"}`
	if len(line) != 80 {
		t.Fatalf("line of %d bytes", len(line))
	}
	writeFile(t, "max.jsonl", line+"\n"+line)
	res = read(t, "max.jsonl", Options{MaxLineBytes: 80})
	if len(res.events) != 2 || res.err != nil {
		t.Fatalf("lines of MaxLineBytes: %v %v %v", res.events, res.problems, res.err)
	}
}

// xs is what lineOf copies its line from.
var xs = []byte(strings.Repeat("x", 64<<10))

// lineOf is a reader of one long line of 'x' (n bytes, '\n' included) and
// then of rest, made as it is read.
type lineOf struct {
	n    int64
	rest io.Reader
}

func (l *lineOf) Read(p []byte) (int, error) {
	if l.n == 0 {
		return l.rest.Read(p)
	}
	k := int(min(int64(len(p)), l.n, int64(len(xs))))
	copy(p, xs[:k])
	if l.n -= int64(k); l.n == 0 {
		p[k-1] = '\n'
	}
	return k, nil
}

// A 2 GiB line costs no more memory than MaxLineBytes, in either format.
func TestReadHugeLine(t *testing.T) {
	size := int64(2 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	dec, src := testSource(t)
	for _, format := range []Format{CSV, JSONLines} {
		var in io.Reader
		if format == CSV {
			in = io.MultiReader(strings.NewReader("ts,user_id,kind\n1795600000000,1,"),
				&lineOf{n: size, rest: strings.NewReader("1795600000000,2,b\n")})
		} else {
			in = io.MultiReader(strings.NewReader(`{"ts": 1795600000000, "user_id": 1, "kind": "`),
				&lineOf{n: size, rest: strings.NewReader(`{"ts": 1795600000000, "user_id": 2}` + "\n")})
		}
		var got []string
		fn := func(row int, ev *event.Event, problems []Problem) error {
			if ev != nil {
				got = append(got, ev.String())
			}
			for _, p := range problems {
				got = append(got, p.Error())
			}
			return nil
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := newRows(context.Background(), "huge", dec, src, Options{Now: now, MaxLineBytes: DefaultMaxLineBytes}, fn)
		var err error
		if format == CSV {
			err = r.readCSV(iotest.HalfReader(in), 0)
		} else {
			err = r.readJSONLines(in, 0)
		}
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		line := "2"
		if format == JSONLines {
			line = "1"
		}
		want := []string{"huge:" + line + ": line is longer than 1048576 bytes, the most a line may hold; it was skipped"}
		if format == CSV {
			want = append(want, `{ts:1795600000000 2 "b" null null null}`)
		} else {
			want = append(want, `{ts:1795600000000 2 null null null null}`)
		}
		same(t, format.String(), got, want)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
			t.Errorf("%v: a line of %d bytes cost %d bytes of allocation", format, size, alloc)
		}
	}
}

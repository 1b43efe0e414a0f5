package eventfile

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/event"
)

// pcol is one column of a Parquet file a test writes.
type pcol struct {
	name string
	node parquet.Node
}

func parquet64() parquet.Node { return parquet.Leaf(parquet.Int64Type) }

func repeatRows(row []any, n int) [][]any {
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = row
	}
	return rows
}

// fataler is what encodeParquet needs of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// encodeParquet writes rows (one value per column; nil is null) as a
// Parquet file of the given columns, in row groups of rowGroup rows (0:
// one), compressed with codec (nil: none).
func encodeParquet(t fataler, cols []pcol, rows [][]any, rowGroup int, codec parquet.WriterOption) []byte {
	t.Helper()
	g := parquet.Group{}
	for _, c := range cols {
		g[c.name] = c.node
	}
	s := parquet.NewSchema("events", g)
	opts := []parquet.WriterOption{s}
	if codec != nil {
		opts = append(opts, codec)
	}
	if rowGroup > 0 {
		opts = append(opts, parquet.MaxRowsPerRowGroup(int64(rowGroup)))
	}
	var buf bytes.Buffer
	w := parquet.NewWriter(&buf, opts...)
	for _, r := range rows {
		row := make(parquet.Row, len(cols))
		for j, c := range cols {
			leaf, ok := s.Lookup(c.name)
			if !ok {
				t.Fatalf("no column %s", c.name)
			}
			def := 0
			v := parquet.NullValue()
			if r[j] != nil {
				v = parquetValue(t, leaf.Node.Type().Kind(), r[j])
				def = leaf.MaxDefinitionLevel
			}
			row[leaf.ColumnIndex] = v.Level(0, def, leaf.ColumnIndex)
		}
		if _, err := w.WriteRows([]parquet.Row{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parquetValue(t fataler, k parquet.Kind, x any) parquet.Value {
	switch k {
	case parquet.Int32:
		switch x := x.(type) {
		case int:
			return parquet.Int32Value(int32(x))
		case uint32:
			return parquet.Int32Value(int32(x))
		}
	case parquet.Int64:
		switch x := x.(type) {
		case int64:
			return parquet.Int64Value(x)
		case uint64:
			return parquet.Int64Value(int64(x))
		}
	case parquet.Float:
		return parquet.FloatValue(float32(x.(float64)))
	case parquet.Double:
		return parquet.DoubleValue(x.(float64))
	case parquet.ByteArray:
		return parquet.ByteArrayValue([]byte(x.(string)))
	case parquet.Boolean:
		return parquet.BooleanValue(x.(bool))
	}
	t.Fatalf("no %v value of %T", k, x)
	return parquet.Value{}
}

func writeParquetFile(t testing.TB, name string, cols []pcol, rows [][]any) string {
	t.Helper()
	if err := os.WriteFile(name, encodeParquet(t, cols, rows, 0, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// Every conversion Read makes, each column optional or required, over
// several row groups and pages, compressed or not.
func TestReadParquet(t *testing.T) {
	inTempDir(t)
	ts := time.UnixMilli(1795600000000)
	cols := []pcol{
		{"ts", parquet.Timestamp(parquet.Nanosecond)},
		{"user_id", parquet.Int(32)},
		{"kind", parquet.Optional(parquet.String())},
		{"amount", parquet.Optional(parquet.Leaf(parquet.FloatType))},
		{"n", parquet.Optional(parquet.Uint(64))},
		{"ok", parquet.Optional(parquet.Leaf(parquet.BooleanType))},
	}
	rows := [][]any{
		{ts.Add(1500 * time.Microsecond).UnixNano(), 1, "view", 1.5, uint64(7), true},
		{ts.Add(-time.Nanosecond).UnixNano(), -2, nil, nil, nil, nil},
		{ts.UnixNano(), 3, "", -0.25, uint64(0), false},
	}
	want := []string{
		`1 {ts:1795600000001 1 "view" 1.5 null true}`, // n: 7 below
		`2 {ts:1795599999999 -2 null null null null}`,
		`3 {ts:1795600000000 3 "" -0.25 null false}`,
	}
	want[0] = strings.Replace(want[0], "1.5 null", "1.5 7", 1)
	want[2] = strings.Replace(want[2], "-0.25 null", "-0.25 0", 1)
	writeParquetFile(t, "good.parquet", cols, rows)
	res := read(t, "good.parquet", Options{})
	if res.err != nil || len(res.problems) > 0 {
		t.Fatalf("%v %v", res.err, res.problems)
	}
	same(t, "events", res.events, want)

	// Other types of the columns: epoch ms, double, int64 to float64,
	// unannotated byte arrays, the time as text.
	for _, tc := range []struct {
		name string
		cols []pcol
		rows [][]any
		want []string
	}{
		{"ms", []pcol{{"ts", parquet64()}, {"user_id", parquet.Int(64)}, {"amount", parquet.Leaf(parquet.DoubleType)}, {"kind", parquet.Leaf(parquet.ByteArrayType)}},
			[][]any{{int64(1795600000000), int64(math.MinInt64), 0.1, "\xff"}},
			[]string{"1 {ts:1795600000000 -9223372036854775808 \"\uFFFD\" 0.1 null null}"}},
		{"ints as floats", []pcol{{"ts", parquet.Timestamp(parquet.Millisecond)}, {"user_id", parquet.Uint(32)}, {"amount", parquet.Int(64)}, {"n", parquet.Int(32)}},
			[][]any{{int64(1795600000000), uint32(math.MaxUint32), int64(1) << 60, 5}},
			[]string{"1 {ts:1795600000000 4294967295 null 1.152921504606847e+18 5 null}"}},
		{"time text", []pcol{{"ts", parquet.String()}, {"user_id", parquet64()}},
			[][]any{{"2026-11-26T09:59:00Z", int64(1)}, {"1795600000000", int64(2)}},
			[]string{"1 {ts:1795687140000 1 null null null null}", "2 {ts:1795600000000 2 null null null null}"}},
		{"micros", []pcol{{"ts", parquet.Timestamp(parquet.Microsecond)}, {"user_id", parquet64()}},
			[][]any{{int64(1795600000999_999), int64(1)}},
			[]string{"1 {ts:1795600000999 1 null null null null}"}},
	} {
		writeParquetFile(t, "t.parquet", tc.cols, tc.rows)
		res := read(t, "t.parquet", Options{})
		if res.err != nil || len(res.problems) > 0 {
			t.Errorf("%s: %v %v", tc.name, res.err, res.problems)
		}
		same(t, tc.name, res.events, tc.want)
	}
}

// Many rows, in several row groups, pages and batches, compressed.
func TestReadParquetMany(t *testing.T) {
	inTempDir(t)
	cols := []pcol{{"ts", parquet64()}, {"user_id", parquet64()}, {"kind", parquet.Optional(parquet.String())}}
	const n = 10_000
	rows := make([][]any, n)
	for i := range rows {
		var kind any
		if i%3 > 0 {
			kind = strings.Repeat("k", i%50)
		}
		rows[i] = []any{int64(1795600000000 + i), int64(i), kind}
	}
	for _, codec := range []parquet.WriterOption{nil, parquet.Compression(&parquet.Zstd), parquet.Compression(&parquet.Snappy), parquet.Compression(&parquet.Gzip)} {
		if err := os.WriteFile("many.parquet", encodeParquet(t, cols, rows, 3000, codec), 0o644); err != nil {
			t.Fatal(err)
		}
		dec, src := testSource(t)
		i := 0
		err := Read(context.Background(), "many.parquet", dec, src, Options{Now: now}, func(row int, ev *event.Event, problems []Problem) error {
			if row != i+1 || ev == nil {
				t.Fatalf("row %d (want %d): %v %v", row, i+1, ev, problems)
			}
			wantKind := event.Value{}
			if i%3 > 0 {
				wantKind = event.StringValue(strings.Repeat("k", i%50))
			}
			if ev.TS != 1795600000000+int64(i) || ev.Fields[0].Int != int64(i) || !ev.Fields[1].Equal(wantKind) {
				t.Fatalf("row %d: %v", row, ev)
			}
			i++
			return nil
		})
		if err != nil || i != n {
			t.Fatalf("%v after %d rows", err, i)
		}
	}
}

func TestReadParquetProblems(t *testing.T) {
	inTempDir(t)
	cols := []pcol{
		{"ts", parquet.Optional(parquet64())},
		{"user_id", parquet.Optional(parquet64())},
		{"amount", parquet.Optional(parquet.Leaf(parquet.DoubleType))},
		{"n", parquet.Optional(parquet.Uint(64))},
	}
	writeParquetFile(t, "bad.parquet", cols, [][]any{
		{int64(1795600000000), int64(1), 1.5, uint64(1)},
		{int64(1795600000000), nil, math.NaN(), uint64(math.MaxUint64)},
		{nil, int64(1), math.Inf(-1), nil},
		{int64(1765000000), int64(1), nil, nil},
		{int64(1795687500000), int64(1), nil, nil},
		{int64(-1), int64(1), nil, nil},
		{int64(1795600000000), int64(2), nil, nil},
	})
	res := read(t, "bad.parquet", Options{})
	if res.err != nil {
		t.Fatal(res.err)
	}
	same(t, "events", res.events, []string{
		`1 {ts:1795600000000 1 null 1.5 1 null}`,
		`7 {ts:1795600000000 2 null null null null}`,
	})
	// Each row's problems in the order of the file's columns (which
	// parquet-go sorts by name).
	same(t, "problems", res.problems, []string{
		`bad.parquet:2:amount: NaN is not a finite float64`,
		`bad.parquet:2:n: 18446744073709551615 is out of the int64 range`,
		`bad.parquet:2:user_id: is a key field and cannot be null`,
		`bad.parquet:3:amount: -Inf is not a finite float64`,
		`bad.parquet:3:ts: missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`,
		`bad.parquet:4:ts: event time 1765000000 is before 2000-01-01 (min_event_time of source clicks); it looks like seconds since 1970: send milliseconds (1765000000000)`,
		`bad.parquet:5:ts: event time 2026-11-26T10:05:00Z is more than 1m0s ahead of the server clock (2026-11-26T10:00:00Z); fix the producer's clock or raise max_future_skew of source clicks`,
		`bad.parquet:6:ts: -1 epoch milliseconds is outside 1970–9999`,
	})

	// A TIMESTAMP too early is shown as a time.
	writeParquetFile(t, "early.parquet", []pcol{{"ts", parquet.Timestamp(parquet.Millisecond)}, {"user_id", parquet64()}},
		[][]any{{time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMilli(), int64(1)}})
	res = read(t, "early.parquet", Options{})
	same(t, "problems", res.problems, []string{
		`early.parquet:1:ts: event time "1999-12-31T00:00:00Z" is before 2000-01-01 (min_event_time of source clicks); send the time as epoch milliseconds or RFC 3339, or lower min_event_time`,
	})
}

// A schema that does not fit the source refuses the file, with every
// problem of it, before any row.
func TestReadParquetSchema(t *testing.T) {
	inTempDir(t)
	f := func(cols []pcol, want ...string) {
		t.Helper()
		rows := [][]any{make([]any, len(cols))}
		for _, c := range cols {
			if !c.node.Leaf() || c.node.Repeated() {
				rows = nil // no rows to write of a nested column
			}
		}
		writeParquetFile(t, "s.parquet", cols, rows)
		res := read(t, "s.parquet", Options{})
		if len(res.events)+len(res.problems) > 0 {
			t.Errorf("rows read: %v %v", res.events, res.problems)
		}
		same(t, "errors", errorLines(res.err), want)
	}
	opt := parquet.Optional
	f([]pcol{{"ts", opt(parquet64())}, {"user_id", opt(parquet.String())}, {"kind", opt(parquet64())}, {"amount", opt(parquet.String())},
		{"n", opt(parquet.Leaf(parquet.DoubleType))}, {"ok", opt(parquet.Int(32))}, {"color", opt(parquet.String())}},
		// In the order of the file's columns, which parquet-go sorts.
		`s.parquet: column amount: is BYTE_ARRAY (STRING); source clicks declares it float64: write it as FLOAT, DOUBLE, INT32 or INT64`,
		`s.parquet: column color: not a field of source clicks (fields: user_id, kind, amount, n, ok, and ts for the event time)`,
		`s.parquet: column kind: is INT64; source clicks declares it string: write it as a BYTE_ARRAY STRING`,
		`s.parquet: column n: is DOUBLE; source clicks declares it int64: write it as INT32 or INT64`,
		`s.parquet: column ok: is INT32; source clicks declares it bool: write it as BOOLEAN`,
		`s.parquet: column user_id: is BYTE_ARRAY (STRING); source clicks declares it int64: write it as INT32 or INT64`)
	f([]pcol{{"ts", opt(parquet.Date())}, {"user_id", opt(parquet64())}},
		`s.parquet: column ts: is INT32 (DATE); the event time must be INT64 epoch milliseconds, a TIMESTAMP, or a string (RFC 3339 or epoch milliseconds)`)
	f([]pcol{{"ts", opt(parquet.Leaf(parquet.DoubleType))}, {"user_id", opt(parquet.Decimal(2, 10, parquet.Int64Type))}},
		`s.parquet: column ts: is DOUBLE; the event time must be INT64 epoch milliseconds, a TIMESTAMP, or a string (RFC 3339 or epoch milliseconds)`,
		`s.parquet: column user_id: is INT64 (DECIMAL(10,2)); source clicks declares it int64: write it as INT32 or INT64`)
	f([]pcol{{"user_id", opt(parquet64())}, {"kind", opt(parquet.String())}},
		`s.parquet: column ts: missing: every event needs its event time, as RFC 3339 ("2026-11-26T10:00:00Z") or epoch milliseconds`)
	f([]pcol{{"ts", opt(parquet64())}},
		`s.parquet: column user_id: missing: it is a key field of a view fed by source clicks`)
	f([]pcol{{"ts", opt(parquet64())}, {"user_id", parquet.Repeated(parquet64())}, {"kind", parquet.Group{"a": parquet.String()}}},
		`s.parquet: column kind: is a nested or repeated column; source clicks declares it string: write it as a flat column`,
		`s.parquet: column user_id: is a nested or repeated column; source clicks declares it int64: write it as a flat column`)
}

// A damaged file is an error, never a panic, at any point it is cut.
func TestReadParquetDamaged(t *testing.T) {
	inTempDir(t)
	cols := []pcol{{"ts", parquet64()}, {"user_id", parquet64()}, {"kind", parquet.Optional(parquet.String())}}
	rows := make([][]any, 600)
	for i := range rows {
		rows[i] = []any{int64(1795600000000), int64(i), "k"}
	}
	data := encodeParquet(t, cols, rows, 200, parquet.Compression(&parquet.Zstd))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "d.parquet: not a Parquet file, or a damaged one ("},
		{"text", []byte("ts,user_id\n1,2\n"), "d.parquet: not a Parquet file, or a damaged one ("},
		{"no footer", data[:len(data)-8], "d.parquet: not a Parquet file, or a damaged one ("},
		{"half", data[:len(data)/2], "d.parquet: not a Parquet file, or a damaged one ("},
	} {
		if err := os.WriteFile("d.parquet", tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		res := read(t, "d.parquet", Options{})
		if res.err == nil || !strings.HasPrefix(res.err.Error(), tc.want) || len(res.events) > 0 {
			t.Errorf("%s: %d events, error %v\n  want %s…", tc.name, len(res.events), res.err, tc.want)
		}
	}
	// LZ4, whose decoder never gives up on a damaged page, is refused.
	if err := os.WriteFile("d.parquet", encodeParquet(t, cols, rows[:1], 0, parquet.Compression(&parquet.Lz4Raw)), 0o644); err != nil {
		t.Fatal(err)
	}
	same(t, "lz4", errorLines(read(t, "d.parquet", Options{}).err), []string{
		"d.parquet: compressed with LZ4_RAW, which this reader does not take: write it compressed with zstd, snappy, gzip or brotli, or not compressed",
	})

	// Any byte changed, or the data cut: an error or events, never a
	// panic (read checks the events).
	step := 3
	if testing.Short() {
		step = 29
	}
	for i := 0; i < len(data); i += step {
		bad := bytes.Clone(data)
		bad[i] ^= 0x5a
		if err := os.WriteFile("d.parquet", bad, 0o644); err != nil {
			t.Fatal(err)
		}
		read(t, "d.parquet", Options{})
	}
	// Pages missing from the middle of the file, the footer intact.
	bad := bytes.Clone(data)
	copy(bad[len(data)/3:], make([]byte, len(data)/3))
	if err := os.WriteFile("d.parquet", bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := read(t, "d.parquet", Options{}); res.err == nil || !strings.HasPrefix(res.err.Error(), "d.parquet: damaged") {
		t.Errorf("zeroed pages: %d events, error %v", len(res.events), res.err)
	}
}

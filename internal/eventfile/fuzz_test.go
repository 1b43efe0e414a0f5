package eventfile

import (
	"bytes"
	"context"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/eventjson"
)

// The fuzz targets feed arbitrary bytes to each format's reader: it must
// return an error, or rows that are each an event the source accepts or
// problems, in increasing row order; never panic. Inputs are capped, as a
// file is only bigger.

const fuzzMaxBytes = 1 << 16

// fuzzRead runs read (one of rows' readers) on data, as a file of the
// test source (dec, src), and checks what it gives.
func fuzzRead(t *testing.T, dec *eventjson.Decoder, src *definition.Source, data []byte, read func(r *rows, data []byte) error) {
	if len(data) > fuzzMaxBytes {
		return
	}
	keys := dec.KeyFields(src)
	last := 0
	fn := func(row int, ev *event.Event, problems []Problem) error {
		if row <= last {
			t.Fatalf("row %d after row %d", row, last)
		}
		last = row
		if (ev == nil) == (len(problems) == 0) {
			t.Fatalf("row %d: event %v with problems %v", row, ev, problems)
		}
		if ev != nil {
			checkEvent(t, src, keys, ev)
		}
		for _, p := range problems {
			if p.Row != row || p.Message == "" {
				t.Fatalf("row %d: problem %#v", row, p)
			}
		}
		return nil
	}
	r := newRows(context.Background(), "fuzz", dec, src, Options{Now: now, MaxLineBytes: 256}, fn)
	_ = read(r, data)
}

func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("ts,user_id,kind,amount,n,ok\n1795600000000,1,a,1.5,2,true\n2026-11-26T09:59:00Z,2,,,,\n"))
	f.Add([]byte("\uFEFFkind,ts,user_id\r\n\"a,\"\"b\"\"\",1795600000000,1\r\n"))
	f.Add([]byte("ts,user_id\n1795600000000,1.5\n,1\n1,2,3\n\"x\n"))
	f.Add([]byte("ts,user_id,color\n"))
	dec, src := testSource(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, dec, src, data, func(r *rows, data []byte) error { return r.readCSV(bytes.NewReader(data), int64(len(data))) })
	})
}

func FuzzReadJSONL(f *testing.F) {
	f.Add([]byte(`{"user_id": 1, "kind": "a", "amount": 1.5, "n": 2, "ok": true, "ts": 1795600000000}` + "\n\n" +
		`{"user_id": 2, "ts": "2026-11-26T09:59:00Z"}` + "\r\n"))
	f.Add([]byte(`{"user_id": null, "ts": 1765000000, "color": 1}` + "\n[1]\n{\n"))
	f.Add([]byte("[\n{}\n]"))
	dec, src := testSource(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, dec, src, data, func(r *rows, data []byte) error {
			return r.readJSONLines(bytes.NewReader(data), int64(len(data)))
		})
	})
}

func FuzzReadParquet(f *testing.F) {
	opt := parquet.Optional
	f.Add(encodeParquet(f, []pcol{
		{"ts", parquet64()}, {"user_id", opt(parquet64())}, {"kind", opt(parquet.String())},
		{"amount", opt(parquet.Leaf(parquet.DoubleType))}, {"n", opt(parquet.Int(32))}, {"ok", opt(parquet.Leaf(parquet.BooleanType))},
	}, [][]any{
		{int64(1795600000000), int64(1), "a", 1.5, 2, true},
		{int64(1765000000), nil, nil, nil, nil, nil},
	}, 1, nil))
	f.Add(encodeParquet(f, []pcol{{"ts", parquet.Timestamp(parquet.Microsecond)}, {"user_id", parquet.Uint(64)}, {"amount", opt(parquet.Leaf(parquet.FloatType))}},
		[][]any{{int64(1795600000000_000), uint64(1), 0.5}, {int64(1795600000000_000), uint64(1) << 63, nil}}, 0, parquet.Compression(&parquet.Zstd)))
	f.Add(encodeParquet(f, []pcol{{"ts", opt(parquet.String())}, {"user_id", parquet64()}},
		[][]any{{"2026-11-26T09:59:00Z", int64(1)}, {nil, int64(2)}, {"x", int64(3)}}, 0, parquet.Compression(&parquet.Snappy)))
	f.Add([]byte("PAR1PAR1"))
	dec, src := testSource(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, dec, src, data, func(r *rows, data []byte) error { return r.readParquet(bytes.NewReader(data), int64(len(data))) })
	})
}

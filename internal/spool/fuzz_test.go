package spool

import (
	"testing"

	"github.com/kiln-dev/kiln/internal/event"
)

// FuzzDecodeRecord feeds arbitrary bytes to the journal's record reader: it
// must return an error or a record of the source's shape, never panic, and
// a record it accepts must encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	p := testProject()
	src := p.Sources[0]
	sc := schemaOf(src)
	f.Add(appendRecord(nil, src.Name, sc.hash, 42, []string{"push/x", "kafka/t/0"},
		[]event.Event{mkEvent(1, 0, 0), mkEvent(2, 7, 9), {TS: -5, Fields: make([]event.Value, 4)}}, []int{0, 1, -1}, []uint64{3, 9, 0}))
	f.Add(appendRecord(nil, src.Name, sc.hash, 0, []string{"push/x"}, nil, nil, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, _, err := nextRecord(b)
		if err != nil {
			return
		}
		r, err := decodeRecord(payload, func(name string) (schema, bool) { return sc, name == src.Name })
		if err != nil {
			return
		}
		evs := make([]event.Event, len(r.events))
		streamOf := make([]int, len(r.events))
		pos := make([]uint64, len(r.events))
		for i, ev := range r.events {
			if len(ev.fields) != len(src.Fields) || ev.stream >= len(r.streams) {
				t.Fatalf("event %d: %d fields, stream %d of %d", i, len(ev.fields), ev.stream, len(r.streams))
			}
			evs[i] = event.Event{TS: ev.ts, Fields: ev.fields}
			streamOf[i], pos[i] = ev.stream, ev.pos
		}
		again := appendRecord(nil, r.source, sc.hash, r.arrival, r.streams, evs, streamOf, pos)
		p2, _, err := nextRecord(again)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRecord(p2, func(string) (schema, bool) { return sc, true })
		if err != nil || r2.arrival != r.arrival || len(r2.events) != len(r.events) {
			t.Fatalf("re-encoded record reads back as %+v, %v; was %+v", r2, err, r)
		}
	})
}

package eventjson

import (
	"strconv"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/projectfile"
	"github.com/kiln-dev/kiln/internal/workload"
)

// rw1Bench is a decoder of the RW1 project (examples/feed/kiln.yaml) and
// bodies of RW1 live events, encoded as kiln-bench encodes them.
type rw1Bench struct {
	d      *Decoder
	src    *definition.Source
	now    int64
	events [][]byte // single event objects
	body   []byte   // a push of all of them
}

func newRW1Bench(b *testing.B, n int) *rw1Bench {
	p, err := projectfile.Load("../../examples/feed/kiln.yaml")
	if err != nil {
		b.Fatal(err)
	}
	src := p.Source(workload.SourceName)
	live := workload.NewGenerator(workload.Config{Scale: 0.01}).Live(0)
	r := &rw1Bench{d: NewDecoder(p), src: src, now: workload.DefaultNow.UnixMilli()}
	r.body = append(r.body, `{"source":"engagements","events":[`...)
	var ev event.Event
	for i := range n {
		live.Next(workload.DefaultNow.Add(-time.Duration(n-i)*time.Millisecond), &ev)
		var e []byte
		e = append(e, '{')
		for fi, v := range ev.Fields {
			e = strconv.AppendQuote(e, workload.FieldNames[fi])
			e = append(e, ':')
			switch v.Kind {
			case event.Int64:
				e = strconv.AppendInt(e, v.Int, 10)
			case event.Float64:
				e = strconv.AppendFloat(e, v.Float, 'g', -1, 64)
			case event.String:
				e = strconv.AppendQuote(e, v.Str)
			}
			e = append(e, ',')
		}
		e = append(e, `"ts":`...)
		e = strconv.AppendInt(e, ev.TS, 10)
		e = append(e, '}')
		if i > 0 {
			r.body = append(r.body, ',')
		}
		r.body = append(r.body, e...)
		r.events = append(r.events, e)
	}
	r.body = append(r.body, "]}"...)
	return r
}

// BenchmarkDecodePush decodes a push of 1000 RW1 events.
func BenchmarkDecodePush(b *testing.B) {
	r := newRW1Bench(b, 1000)
	b.SetBytes(int64(len(r.body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.d.DecodePush(r.body, r.now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(r.events))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeEvent decodes RW1 events one at a time, as a streaming
// source does, into one reused event.
func BenchmarkDecodeEvent(b *testing.B) {
	r := newRW1Bench(b, 1000)
	ev := event.Event{Fields: make([]event.Value, len(r.src.Fields))}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := r.d.DecodeEvent(r.src, r.events[i], r.now, &ev); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(r.events) {
			i = 0
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

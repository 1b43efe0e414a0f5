package tile

import (
	"slices"

	"github.com/kiln-dev/kiln/internal/event"
)

// RowBytes estimates the encoded size of one entity's row: empty (the fixed
// overhead of a row that exists) and full (an entity active in every tile
// of every window, with every feature set: the largest a row gets without
// events from the future).
func (p *Plan) RowBytes() (empty, full int) {
	const now = 1_790_000_000_000 // any time; sizes do not depend on it
	r := p.NewRow()
	r.Clock = now
	r.Newest = now
	empty = len(p.AppendRow(nil, r))
	for li := range p.Levels {
		l := &p.Levels[li]
		var starts []int64
		if l.Window.IsAllTime() {
			if l.Slots > 0 {
				starts = []int64{0}
			}
		} else {
			for s := l.Window.Start(now); s <= now; s += l.Window.Hop {
				starts = append(starts, s)
			}
		}
		// Newest first, as a row holds them.
		for _, s := range slices.Backward(starts) {
			r.tiles = append(r.tiles, startBits(s))
			for _, k := range l.kinds {
				v := 1234.5
				if k == slotCount {
					v = 1000 // a two-byte varint
				}
				r.tiles = append(r.tiles, v)
			}
		}
		r.end[li] = int32(len(r.tiles))
	}
	for i := range r.lasts {
		r.lasts[i] = LastState{TS: now, Value: p.typicalLast(i)}
	}
	return empty, len(p.AppendRow(nil, r))
}

// typicalLast is a value of the type of the i-th "last" feature's field.
func (p *Plan) typicalLast(i int) event.Value {
	for _, f := range p.features {
		if f.last != i {
			continue
		}
		switch p.fieldType[f.field] {
		case event.Int64:
			return event.IntValue(1 << 40)
		case event.Float64:
			return event.FloatValue(1234.5)
		case event.String:
			return event.StringValue("a 16-byte string")
		case event.Bool:
			return event.BoolValue(true)
		}
	}
	return event.IntValue(0)
}

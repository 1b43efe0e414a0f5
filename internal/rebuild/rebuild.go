// Package rebuild owns replaying the event archive into one view's rows:
// after the view's definition changed (its rows started afresh under a new
// generation), or when a view is added to a project that already has
// history. Run reads the archive of the view's source, date by date, from
// the oldest event time the view's windows still cover, and folds the
// events into the view alone through the normal write path
// (ingest.Writer.Replay: single writer per row, group commit, the same
// durability as a push), leaving every other view untouched.
//
// # What the caller must do
//
// Start the live write path with the view included (at its new
// generation) before Run, and pass as Config.Before the writer's clock
// (Writer.Now) at that moment, T0: Run replays only events whose archived
// Arrival is before T0, since every event accepted from T0 on reaches the
// view live. Every event accepted before T0 must be in the archive by then.
// Mark the view unavailable to readers until Run returns nil: its values
// are incomplete meanwhile. If Run does not finish (an error, a crash, ctx
// ended), the view's rows are a partial replay: start the view afresh
// again, under a new generation, and rerun.
package rebuild

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
	"github.com/kiln-dev/kiln/internal/ingest"
	"github.com/kiln-dev/kiln/internal/store"
	"github.com/kiln-dev/kiln/internal/stream"
	"github.com/kiln-dev/kiln/internal/tile"
)

// Archive is the part of archive.Archive a rebuild reads.
type Archive interface {
	Dates(ctx context.Context, src *definition.Source) ([]time.Time, error)
	Scan(ctx context.Context, src *definition.Source, from, to time.Time, fn func(ev archive.Archived) error) error
}

// Writer is the part of ingest.Writer a rebuild writes through.
type Writer interface {
	Now() int64
	Replay(ctx context.Context, v *definition.View, events []event.Event) (ingest.Result, error)
}

// Config is what Run needs. View, Plan, Archive, Writer and Before are
// required.
type Config struct {
	View *definition.View
	// Plan is the view's plan (at any generation): its windows say how far
	// back the view needs events.
	Plan    *tile.Plan
	Archive Archive
	Writer  Writer
	// Before is T0: only events archived with an Arrival before it are
	// replayed (see the package doc).
	Before int64
	// BatchEvents is how many events go to the writer at once. Default
	// 4096.
	BatchEvents int
	// Logger receives a progress line every LogEvery (default 10s) and the
	// summary. Default: discard.
	Logger   *slog.Logger
	LogEvery time.Duration
	// Clock paces the progress lines and times the rebuild. Default
	// time.Now.
	Clock func() time.Time
	// Progress, if set, is told the progress after each batch.
	Progress func(Progress)
	// BeforeBatch, if set, is called before each batch is replayed; an
	// error stops the rebuild. Tests hold a rebuild in the middle with it.
	BeforeBatch func(ctx context.Context, p Progress) error
}

// Progress is how far a rebuild has come.
type Progress struct {
	View string `json:"view"`
	// Replayed counts the events handed to the write path; DroppedLate
	// those of them no window covers any more.
	Replayed    int64 `json:"events_replayed"`
	DroppedLate int64 `json:"dropped_late"`
	// Live counts the archived events passed over because they arrived at
	// or after T0: the live write path folds them.
	Live int64 `json:"arrived_live"`
	// DatesDone of DatesTotal archived dates are replayed.
	DatesDone  int `json:"dates_done"`
	DatesTotal int `json:"dates_total"`
}

// String says the progress in words.
func (p Progress) String() string {
	return fmt.Sprintf("%d of %d archived dates, %d events replayed", p.DatesDone, p.DatesTotal, p.Replayed)
}

// Summary is what a finished rebuild did.
type Summary struct {
	Progress
	// Rows counts the distinct rows the replay touched.
	Rows int `json:"rows"`
	// Elapsed is the rebuild's duration by Config.Clock.
	Elapsed time.Duration `json:"elapsed"`
	// Needed is the oldest event time (Unix ms) the view's windows cover;
	// math.MinInt64 when the view has an all-time feature.
	Needed int64 `json:"needed_from"`
	// ArchiveFrom is the first instant of the archive's oldest date of
	// the source (Unix ms); -1 when it holds none.
	ArchiveFrom int64 `json:"archive_from"`
	// Incomplete is empty when the archive reached back as far as the
	// windows need; else it says which values miss events, and from when
	// they are complete.
	Incomplete string `json:"incomplete,omitempty"`
}

// String is the summary in one line.
func (s Summary) String() string {
	line := fmt.Sprintf("view %s rebuilt: %d events replayed (%d too old for any window, %d left to the live path) into %d rows from %d archived dates in %v",
		s.View, s.Replayed, s.DroppedLate, s.Live, s.Rows, s.DatesTotal, s.Elapsed.Round(time.Millisecond))
	if s.Incomplete != "" {
		line += "; " + s.Incomplete
	}
	return line
}

// day is the span of one archived date.
const day = 24 * time.Hour

// Run replays the archive into the view's rows and returns what it did.
// See the package doc for what must hold before and after.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	v, src := cfg.View, cfg.View.Source
	log := cfg.Logger.With("view", v.Name, "source", src.Name)
	began := cfg.Clock()
	s := Summary{Progress: Progress{View: v.Name}, Needed: cfg.Plan.LateBefore(cfg.Writer.Now()), ArchiveFrom: -1}
	dates, err := cfg.Archive.Dates(ctx, src)
	if err != nil {
		return s, fmt.Errorf("rebuilding view %s: listing the archive of source %s: %w", v.Name, src.Name, err)
	}
	if len(dates) > 0 {
		s.ArchiveFrom = dates[0].UnixMilli()
	}
	from := max(s.Needed, 0)
	var todo []time.Time
	for _, d := range dates {
		if d.Add(day).UnixMilli() > from {
			todo = append(todo, d)
		}
	}
	s.DatesTotal = len(todo)
	s.Incomplete = incompleteness(cfg.Plan, src, s.Needed, s.ArchiveFrom)
	if s.ArchiveFrom < 0 {
		log.Warn("the event archive holds no event of the view's source: the view is rebuilt empty")
	}
	log.Info("rebuilding the view from the event archive", "dates", s.DatesTotal,
		"needed_from", timeOrAll(s.Needed), "archive_from", timeOrNone(s.ArchiveFrom), "arrived_before", time.UnixMilli(cfg.Before).UTC())

	keyFields := make([]int, len(v.Entity.Keys))
	for i, k := range v.Entity.Keys {
		keyFields[i] = src.FieldIndex(k)
	}
	rows := map[uint64]struct{}{}
	var key []byte
	var keyVals []event.Value
	batch := make([]event.Event, 0, cfg.BatchEvents)
	lastLog := began
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if cfg.BeforeBatch != nil {
			if err := cfg.BeforeBatch(ctx, s.Progress); err != nil {
				return err
			}
		}
		res, err := cfg.Writer.Replay(ctx, v, batch)
		if err != nil {
			return err
		}
		for i := range batch {
			keyVals = keyVals[:0]
			for _, f := range keyFields {
				keyVals = append(keyVals, batch[i].Fields[f])
			}
			key = tile.AppendKey(key[:0], v.Name, keyVals)
			rows[store.KeyHash(key)] = struct{}{}
		}
		s.Replayed += int64(len(batch))
		s.DroppedLate += int64(res.DroppedLate)
		clear(batch)
		batch = batch[:0]
		if cfg.Progress != nil {
			cfg.Progress(s.Progress)
		}
		if now := cfg.Clock(); now.Sub(lastLog) >= cfg.LogEvery {
			lastLog = now
			log.Info("rebuild progress", "dates_done", s.DatesDone, "dates_total", s.DatesTotal, "events_replayed", s.Replayed)
		}
		return nil
	}
	for _, d := range todo {
		lo := time.UnixMilli(max(d.UnixMilli(), from))
		err := cfg.Archive.Scan(ctx, src, lo, d.Add(day), func(a archive.Archived) error {
			if a.Arrival >= cfg.Before {
				s.Live++
				return nil
			}
			batch = append(batch, event.Event{TS: a.Time, Fields: a.Fields, Origin: Origin(a.Origin)})
			if len(batch) == cfg.BatchEvents {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return s, fmt.Errorf("rebuilding view %s from the archive of source %s, date %s: %w", v.Name, src.Name, d.Format(time.DateOnly), err)
		}
		s.DatesDone++
		if cfg.Progress != nil {
			cfg.Progress(s.Progress)
		}
	}
	s.Rows = len(rows)
	s.Elapsed = cfg.Clock().Sub(began)
	if s.Incomplete != "" {
		log.Warn("rebuilt values are incomplete: the archive does not reach back as far as the view's windows", "detail", s.Incomplete)
	}
	log.Info("rebuild done", "events_replayed", s.Replayed, "dropped_late", s.DroppedLate, "arrived_live", s.Live,
		"rows", s.Rows, "dates", s.DatesTotal, "elapsed", s.Elapsed.Round(time.Millisecond))
	return s, nil
}

// Origin is the write path's origin of an archived event: a streamed
// event's stream (stream.StreamID of the archive's stream name, such as
// "kafka/<topic>/<partition>") and offset, so that a row records the
// positions it holds; the zero Origin for a pushed event (an empty stream
// name, or one that begins with "push/"), which rows do not track.
func Origin(o archive.Origin) event.Origin {
	if o.Stream == "" || strings.HasPrefix(o.Stream, "push/") {
		return event.Origin{}
	}
	return event.Origin{Stream: stream.StreamID(o.Stream), Offset: uint64(o.Offset)}
}

// incompleteness words what a rebuild misses when the archive begins after
// the oldest event time the view's windows need; empty when it does not.
func incompleteness(p *tile.Plan, src *definition.Source, needed, archiveFrom int64) string {
	if archiveFrom < 0 || archiveFrom <= max(needed, 0) {
		return ""
	}
	begins := time.UnixMilli(archiveFrom).UTC().Format(time.DateOnly)
	if needed == math.MinInt64 {
		return fmt.Sprintf("the archive of source %s begins on %s: the view's all-time features count only events from then on, and its windows are complete once they start after it", src.Name, begins)
	}
	complete := time.UnixMilli(archiveFrom + p.Retention()).UTC().Format(time.RFC3339)
	return fmt.Sprintf("the archive of source %s begins on %s, after %s, the oldest event time the view's windows need: windows that reach back before %s miss earlier events; every window of the view is complete from %s on",
		src.Name, begins, time.UnixMilli(needed).UTC().Format(time.RFC3339), begins, complete)
}

func timeOrAll(ms int64) any {
	if ms == math.MinInt64 {
		return "all time"
	}
	return time.UnixMilli(ms).UTC()
}

func timeOrNone(ms int64) any {
	if ms < 0 {
		return "empty"
	}
	return time.UnixMilli(ms).UTC()
}

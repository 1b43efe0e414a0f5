package archive

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/event"
)

// Archived is one archived event.
type Archived struct {
	// Time is the event time, Unix milliseconds; it picks the file's date.
	Time int64
	// Arrival is when Kiln accepted the event, Unix milliseconds.
	Arrival int64
	// Fields holds one value per field of the source, in schema order; a
	// Null value is a missing field.
	Fields []event.Value
	// Origin says where the event came from; it is the event's identity in
	// the archive.
	Origin Origin
}

// Origin identifies an archived event: Stream names where it was read (a
// Kafka "topic/partition", a JetStream stream name; empty for pushes) and
// Offset is its position there (the Kafka offset, the JetStream sequence, or
// the write path's own sequence number for pushes). Two archived events with
// the same Origin are the same event.
type Origin struct {
	Stream string
	Offset int64
}

// Archive is the event archive over one Bucket. It holds no state of its
// own beyond the Bucket, so several Archives (or processes) may share one
// Bucket, and its methods are safe for concurrent use if the Bucket's are.
type Archive struct {
	b Bucket
}

// New returns the archive stored in b.
func New(b Bucket) *Archive { return &Archive{b: b} }

const (
	dateLayout  = "2006-01-02"
	batchPrefix = "b-"
	compPrefix  = "c-"
	fileSuffix  = ".parquet"
	day         = 24 * time.Hour
	// maxTime is 9999-12-31T23:59:59.999Z, the last instant with a
	// four-digit year.
	maxTime = 253402300799999
)

func checkTime(ms int64) error {
	if ms < 0 || ms > maxTime {
		return fmt.Errorf("event time %d is outside 1970-01-01..9999-12-31", ms)
	}
	return nil
}

func dateOf(ms int64) string { return time.UnixMilli(ms).UTC().Format(dateLayout) }

func sourcePrefix(source string) string { return "source=" + source + "/" }

func datePrefix(source, date string) string { return sourcePrefix(source) + "date=" + date + "/" }

// checkBatchID accepts 1 to 200 of [A-Za-z0-9._-], not starting with '.'.
func checkBatchID(id string) error {
	if id == "" || len(id) > 200 || id[0] == '.' {
		return fmt.Errorf("archive: bad batch ID %q", id)
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("archive: bad batch ID %q: use letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// Append archives evs, a batch of source src, under batchID: one file per
// date (UTC, of the event time) the batch touches, named
// "b-<batchID>.parquet" in that date's directory, holding the batch's events
// of that date in the order given. So appending the same batch (the same
// events in the same order) under the same ID again writes the same names
// with the same content.
//
// A batch should not hold two events of one origin; if it does, readers
// (Scan, Compact) keep one.
//
// Append returns nil only when every file is written (durably, as far as the
// Bucket promises). On an error some of the batch's files may exist: the
// caller must append the batch again, with the same ID, before it treats
// the events as archived.
//
// Every event must have len(src.Fields) values of the declared types (or
// Null), finite floats, and an event time in 1970..9999. evs is not kept.
func (a *Archive) Append(ctx context.Context, src *definition.Source, batchID string, evs []Archived) error {
	if err := checkBatchID(batchID); err != nil {
		return err
	}
	fs, err := newFileSchema(src)
	if err != nil {
		return err
	}
	for i := range evs {
		if err := checkEvent(src, &evs[i]); err != nil {
			return fmt.Errorf("archive: source %s batch %s event %d: %w", src.Name, batchID, i, err)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	// Group by day, keeping the order within each: a counting sort into
	// one slice, so each event is copied once.
	const dayMs = int64(day / time.Millisecond)
	count := map[int64]int{}
	for i := range evs {
		count[evs[i].Time/dayMs]++
	}
	byDay := make(map[int64][]Archived, len(count))
	if len(count) == 1 {
		byDay[evs[0].Time/dayMs] = evs
	} else {
		all := make([]Archived, 0, len(evs))
		for d, n := range count {
			byDay[d] = all[len(all) : len(all) : len(all)+n]
			all = all[:len(all)+n]
		}
		for i := range evs {
			d := evs[i].Time / dayMs
			byDay[d] = append(byDay[d], evs[i])
		}
	}
	days := make([]int64, 0, len(byDay))
	for d := range byDay {
		days = append(days, d)
	}
	slices.Sort(days)
	for _, d := range days {
		data, err := fs.encode(src.Name, byDay[d])
		if err != nil {
			return err
		}
		if err := a.b.Put(ctx, datePrefix(src.Name, dateOf(d*dayMs))+batchPrefix+batchID+fileSuffix, data); err != nil {
			return err
		}
	}
	return nil
}

func checkEvent(src *definition.Source, ev *Archived) error {
	if err := checkTime(ev.Time); err != nil {
		return err
	}
	if len(ev.Fields) != len(src.Fields) {
		return fmt.Errorf("%d fields, the source has %d", len(ev.Fields), len(src.Fields))
	}
	for j, v := range ev.Fields {
		if v.Kind != event.Null && v.Kind != src.Fields[j].Type {
			return fmt.Errorf("field %q is %v, declared %v", src.Fields[j].Name, v.Kind, src.Fields[j].Type)
		}
		if err := v.Valid(); err != nil {
			return fmt.Errorf("field %q: %w", src.Fields[j].Name, err)
		}
	}
	return nil
}

// compareOrigin orders by origin stream, then offset.
func compareOrigin(a, b *Archived) int {
	if c := strings.Compare(a.Origin.Stream, b.Origin.Stream); c != 0 {
		return c
	}
	return cmp.Compare(a.Origin.Offset, b.Origin.Offset)
}

// compareOrder is Scan's order: event time, then origin.
func compareOrder(a, b Archived) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	return compareOrigin(&a, &b)
}

// compareContent is the total order on everything but the origin that picks
// which copy of an origin is kept: the earliest arrival, then the rest.
func compareContent(a, b *Archived) int {
	if c := cmp.Compare(a.Arrival, b.Arrival); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.Fields), len(b.Fields)); c != 0 {
		return c
	}
	for i := range a.Fields {
		if c := compareValue(a.Fields[i], b.Fields[i]); c != 0 {
			return c
		}
	}
	return 0
}

// compareValue is event.Value.Compare made total on floats (-0 before +0).
func compareValue(a, b event.Value) int {
	if c := a.Compare(b); c != 0 {
		return c
	}
	if a.Kind == event.Float64 {
		return cmp.Compare(math.Float64bits(b.Float), math.Float64bits(a.Float))
	}
	return 0
}

// dedupe keeps one event per origin — the least by compareContent, so the
// choice does not depend on which files the copies were in — and returns
// them in Scan's order. It reorders evs in place.
func dedupe(evs []Archived) []Archived {
	slices.SortFunc(evs, func(a, b Archived) int {
		if c := compareOrigin(&a, &b); c != 0 {
			return c
		}
		return compareContent(&a, &b)
	})
	evs = slices.CompactFunc(evs, func(a, b Archived) bool { return compareOrigin(&a, &b) == 0 })
	slices.SortFunc(evs, compareOrder)
	return evs
}

// parseName splits an archive object name into its date and file name; ok
// is false for names the archive did not write.
func parseName(source, name string) (date, file string, ok bool) {
	rest, ok := strings.CutPrefix(name, sourcePrefix(source)+"date=")
	if !ok {
		return "", "", false
	}
	date, file, ok = strings.Cut(rest, "/")
	if !ok || strings.Contains(file, "/") || !strings.HasSuffix(file, fileSuffix) {
		return "", "", false
	}
	if _, err := time.Parse(dateLayout, date); err != nil {
		return "", "", false
	}
	return date, file, true
}

// dates lists the source's dates that have files, sorted.
func (a *Archive) dates(ctx context.Context, source string) ([]string, error) {
	names, err := a.b.List(ctx, sourcePrefix(source))
	if err != nil {
		return nil, err
	}
	var dates []string
	for _, o := range names {
		if d, _, ok := parseName(source, o.Name); ok && (len(dates) == 0 || dates[len(dates)-1] != d) {
			dates = append(dates, d)
		}
	}
	slices.Sort(dates)
	return slices.Compact(dates), nil
}

// files lists one date's archive files.
func (a *Archive) files(ctx context.Context, source, date string) ([]Object, error) {
	objs, err := a.b.List(ctx, datePrefix(source, date))
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	for _, o := range objs {
		if d, _, ok := parseName(source, o.Name); ok && d == date {
			out = append(out, o)
		}
	}
	return out, nil
}

// readDate reads every file of a date, deduplicated and in Scan's order,
// and returns the names it read. A file that vanishes between List and Get
// was deleted by a compaction, which wrote its events to a new file first:
// readDate lists again and reads the files it has not read yet.
func (a *Archive) readDate(ctx context.Context, src *definition.Source, date string) ([]Archived, []string, error) {
	read := map[string]bool{}
	var all []Archived
	var names []string
	for attempt := 0; ; attempt++ {
		files, err := a.files(ctx, src.Name, date)
		if err != nil {
			return nil, nil, err
		}
		vanished := false
		for _, o := range files {
			n := o.Name
			if read[n] {
				continue
			}
			data, err := a.b.Get(ctx, n)
			if errors.Is(err, ErrNotExist) {
				vanished = true
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			evs, err := ReadFile(src, n, data)
			if err != nil {
				return nil, nil, err
			}
			read[n] = true
			names = append(names, n)
			all = append(all, evs...)
		}
		if !vanished {
			break
		}
		if attempt == 10 {
			return nil, nil, fmt.Errorf("archive: source %s date %s: files keep vanishing while read", src.Name, date)
		}
	}
	return dedupe(all), names, nil
}

// Scan calls fn for every archived event of src with an event time in
// [from, to), each origin once, in a deterministic order: by date, and
// within a date by event time, then origin stream, then origin offset (so by
// event time, then origin, overall). Of several archived copies of one
// origin it yields the one with the earliest arrival (ties broken by the
// other columns). It reads one date at a time into memory. An error from fn
// stops the scan and is returned.
func (a *Archive) Scan(ctx context.Context, src *definition.Source, from, to time.Time, fn func(ev Archived) error) error {
	sc := a.Scanner(ctx, src, from, to)
	defer sc.Close()
	for sc.Next() {
		if err := fn(*sc.Event()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Scanner reads the events Scan yields, in Scan's order, one Next at a
// time, so that a reader can walk several sources' archives side by side.
// It reads the next date in a goroutine of its own while its caller works
// through the one before: two dates are in memory at most. Close stops it.
type Scanner struct {
	ctx    context.Context
	dates  chan dateEvents
	cancel context.CancelFunc
	done   chan struct{}
	lo, hi int64
	evs    []Archived
	i      int
	err    error
}

// dateEvents is one date's events, read ahead, or the error reading it.
type dateEvents struct {
	evs []Archived
	err error
}

// Scanner returns a scanner of src's events with an event time in [from,
// to). The caller must Close it.
func (a *Archive) Scanner(ctx context.Context, src *definition.Source, from, to time.Time) *Scanner {
	ctx, cancel := context.WithCancel(ctx)
	sc := &Scanner{ctx: ctx, dates: make(chan dateEvents), cancel: cancel, done: make(chan struct{}),
		lo: from.UnixMilli(), hi: to.UnixMilli(), i: -1}
	go func() {
		defer close(sc.done)
		defer close(sc.dates)
		send := func(d dateEvents) bool {
			select {
			case sc.dates <- d:
				return d.err == nil
			case <-ctx.Done():
				return false
			}
		}
		if err := checkSource(src); err != nil {
			send(dateEvents{err: err})
			return
		}
		if sc.lo >= sc.hi {
			return
		}
		dates, err := a.dates(ctx, src.Name)
		if err != nil {
			send(dateEvents{err: err})
			return
		}
		first, last := dateOf(max(sc.lo, 0)), dateOf(min(sc.hi-1, maxTime))
		for _, d := range dates {
			if d < first || d > last {
				continue
			}
			evs, _, err := a.readDate(ctx, src, d)
			if !send(dateEvents{evs: evs, err: err}) {
				return
			}
		}
	}()
	return sc
}

// Next moves to the next event; it returns false at the end or on an error
// (Err says which).
func (sc *Scanner) Next() bool {
	if sc.err != nil {
		return false
	}
	for {
		for sc.i++; sc.i < len(sc.evs); sc.i++ {
			if t := sc.evs[sc.i].Time; t >= sc.lo && t < sc.hi {
				return true
			}
		}
		sc.evs = nil // garbage before the date after the next is read
		d, ok := <-sc.dates
		if !ok {
			sc.err = sc.ctx.Err() // nil at the end; canceled, the scan stopped short
			return false
		}
		if d.err != nil {
			sc.err = d.err
			return false
		}
		sc.evs, sc.i = d.evs, -1
	}
}

// Event is the event Next moved to. Its Fields are never written after
// Next hands them out: a caller may keep them (the date they belong to
// stays in memory while it does).
func (sc *Scanner) Event() *Archived { return &sc.evs[sc.i] }

// Err is the error that ended the scan, if any.
func (sc *Scanner) Err() error { return sc.err }

// Close stops the scanner's reading and waits for it.
func (sc *Scanner) Close() {
	sc.cancel()
	<-sc.done
	sc.evs = nil
}

// CompactBelow is the size under which Compact merges a file: a file this
// big is left as it is. CompactInput bounds the files one Compact merges,
// in bytes: their events are held in memory, at several times the size of
// their Parquet.
const (
	CompactBelow = 8 << 20
	CompactInput = 16 << 20
)

// Compact merges the files of src's date (the UTC day that contains date)
// smaller than CompactBelow into one, deduplicated and sorted, named
// "c-<hash of the input names>.parquet", and then deletes the inputs. It
// does nothing if the date has fewer than two such files. A crash at any
// point leaves every event readable exactly once: the new file is complete
// before any input is deleted, and readers deduplicate by origin while both
// exist. Running Compact again after a crash finishes the job. Compact
// merges files of at most CompactInput bytes in all (the smallest first),
// since it holds their events in memory; what is left waits for the next.
func (a *Archive) Compact(ctx context.Context, src *definition.Source, date time.Time) error {
	fs, err := newFileSchema(src)
	if err != nil {
		return err
	}
	d := date.UTC().Format(dateLayout)
	files, err := a.files(ctx, src.Name, d)
	if err != nil {
		return err
	}
	var small []Object
	for _, o := range files {
		if o.Size < CompactBelow {
			small = append(small, o)
		}
	}
	slices.SortStableFunc(small, func(a, b Object) int { return cmp.Compare(a.Size, b.Size) })
	var inputs []string
	var total int64
	for _, o := range small {
		if len(inputs) >= 2 && total+o.Size > CompactInput {
			break
		}
		inputs = append(inputs, o.Name)
		total += o.Size
	}
	if len(inputs) < 2 {
		return nil
	}
	var evs []Archived
	for _, n := range inputs {
		data, err := a.b.Get(ctx, n)
		if err != nil {
			return err // a file deleted meanwhile: the next Compact sees the new state
		}
		got, err := ReadFile(src, n, data)
		if err != nil {
			return err
		}
		evs = append(evs, got...)
	}
	evs = dedupe(evs)
	slices.Sort(inputs)
	h := sha256.New()
	for _, n := range inputs {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	out := datePrefix(src.Name, d) + compPrefix + hex.EncodeToString(h.Sum(nil)[:16]) + fileSuffix
	data, err := fs.encode(src.Name, evs)
	if err != nil {
		return err
	}
	if err := a.b.Put(ctx, out, data); err != nil {
		return err
	}
	for _, n := range inputs {
		if n == out {
			continue
		}
		if err := a.b.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// Retain deletes the dates of src that lie wholly before now − keep: a
// date's files are deleted once its UTC day has ended by then, so every
// event with a time at or after now − keep is kept. A crash part way leaves
// some files of an expired date; the next Retain deletes them.
func (a *Archive) Retain(ctx context.Context, src *definition.Source, keep time.Duration, now time.Time) error {
	if err := checkSource(src); err != nil {
		return err
	}
	if keep < 0 {
		return fmt.Errorf("archive: negative retention %v", keep)
	}
	cutoff := now.Add(-keep)
	names, err := a.b.List(ctx, sourcePrefix(src.Name))
	if err != nil {
		return err
	}
	for _, o := range names {
		d, _, ok := parseName(src.Name, o.Name)
		if !ok {
			continue
		}
		start, _ := time.Parse(dateLayout, d)
		if !start.Add(day).After(cutoff) {
			if err := a.b.Delete(ctx, o.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Files lists src's archive files of the UTC day that contains date.
func (a *Archive) Files(ctx context.Context, src *definition.Source, date time.Time) ([]Object, error) {
	return a.files(ctx, src.Name, date.UTC().Format(dateLayout))
}

package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kiln-dev/kiln/internal/archive"
	"github.com/kiln-dev/kiln/internal/definition"
)

// flushLoop archives closed segments in order, retrying after a failure,
// and compacts and applies retention every MaintainInterval.
func (s *Spool) flushLoop() {
	defer close(s.flushDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.flushStop:
			cancel()
		case <-s.flushDone:
		}
	}()
	maintain := time.NewTicker(s.opts.MaintainInterval)
	defer maintain.Stop()
	s.maintain(ctx)
	backoff := time.Duration(0)
	for {
		s.fmu.Lock()
		var seq uint64
		have := len(s.closedSegs) > 0
		if have {
			seq = s.closedSegs[0]
		}
		ch := s.progress
		s.fmu.Unlock()
		if !have {
			select {
			case <-ch:
			case <-maintain.C:
				s.maintain(ctx)
			case <-ctx.Done():
				return
			}
			continue
		}
		err := s.archiveSegment(ctx, seq)
		s.fmu.Lock()
		s.flushErr = err
		if err == nil {
			s.closedSegs = s.closedSegs[1:]
			s.archived = seq + 1
		}
		close(s.progress)
		s.progress = make(chan struct{})
		s.fmu.Unlock()
		if err == nil {
			s.segmentsArchived.Add(1)
			s.lastArchived.Store(s.opts.Now().UnixMilli())
		} else {
			s.archiveFailures.Add(1)
		}
		if err == nil {
			backoff = 0
			s.compactTouched(ctx, false)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
		s.opts.Logger.Error("archiving a journal segment failed; retrying (its events stay in the journal until then)",
			"segment", segName(seq), "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

// archiveSegment appends the events of one segment to the archive, records
// the journal's state and deletes the segment.
func (s *Spool) archiveSegment(ctx context.Context, seq uint64) error {
	path := filepath.Join(s.opts.Dir, segName(seq))
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The events of the segment, by source; a first pass counts them.
	counts := map[string]int{}
	for b := data; len(b) > 0; {
		payload, rest, err := nextRecord(b)
		if err != nil {
			return fmt.Errorf("%s at byte %d: %w", path, len(data)-len(b), err)
		}
		b = rest
		src, n, err := recordHeader(payload)
		if err != nil {
			return fmt.Errorf("%s at byte %d: %w", path, len(data)-len(b), err)
		}
		counts[src] += n
	}
	bySource := make(map[string][]archive.Archived, len(counts))
	for src, n := range counts {
		bySource[src] = make([]archive.Archived, 0, n)
	}
	next := s.state
	next.Streams = maps(s.state.Streams)
	next.NextSegment = max(next.NextSegment, seq+1)
	for b := data; len(b) > 0; {
		payload, rest, err := nextRecord(b)
		if err != nil {
			return fmt.Errorf("%s at byte %d: %w", path, len(data)-len(b), err)
		}
		b = rest
		r, err := decodeRecord(payload, s.schemaOf)
		if err != nil {
			return fmt.Errorf("%s at byte %d: %w", path, len(data)-len(b), err)
		}
		evs := bySource[r.source]
		for _, ev := range r.events {
			name := r.streams[ev.stream]
			evs = append(evs, archive.Archived{Time: ev.ts, Arrival: r.arrival, Fields: ev.fields,
				Origin: archive.Origin{Stream: name, Offset: int64(ev.pos)}})
			if name == s.pushStream {
				next.PushNext = max(next.PushNext, ev.pos+1)
			} else if h, ok := next.Streams[name]; !ok || ev.pos > h {
				next.Streams[name] = ev.pos
			}
		}
		bySource[r.source] = evs
	}
	names := make([]string, 0, len(bySource))
	for n := range bySource {
		names = append(names, n)
	}
	slices.Sort(names)
	batch := fmt.Sprintf("%s-%020d", s.state.ID, seq)
	for _, n := range names {
		evs := bySource[n]
		if err := s.opts.Archive.Append(ctx, s.sources[n], batch, evs); err != nil {
			return err
		}
		// Append wrote one file per date the batch touches.
		const dayMs = int64(24 * time.Hour / time.Millisecond)
		days := map[int64]bool{}
		for i := range evs {
			days[evs[i].Time/dayMs] = true
		}
		s.fmu.Lock()
		for d := range days {
			s.touched[dateKey{n, time.UnixMilli(d * dayMs).UTC().Format(time.DateOnly)}]++
		}
		s.fmu.Unlock()
	}
	s.state = next
	if err := s.writeState(); err != nil {
		return err
	}
	for _, evs := range bySource {
		s.eventsArchived.Add(int64(len(evs)))
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return syncDir(s.opts.Dir)
}

// compactTouched compacts each date the journal has written CompactFiles
// files to (any number when all is set) since its last compaction.
func (s *Spool) compactTouched(ctx context.Context, all bool) {
	s.fmu.Lock()
	var due []dateKey
	for k, n := range s.touched {
		if n > 0 && (all || n >= s.opts.CompactFiles) {
			due = append(due, k)
		}
	}
	s.fmu.Unlock()
	for _, k := range due {
		d, _ := time.Parse(time.DateOnly, k.date)
		if !s.compact(ctx, s.sources[k.source], d) {
			if ctx.Err() != nil {
				return // stopping
			}
			continue
		}
		s.forget(k)
	}
}

// compact runs one Compact of src's date d. It reports whether it
// succeeded; a failure is logged (the next maintenance retries), unless the
// flusher is stopping.
func (s *Spool) compact(ctx context.Context, src *definition.Source, d time.Time) bool {
	err := s.opts.Archive.Compact(ctx, src, d)
	if err != nil && ctx.Err() == nil {
		s.opts.Logger.Warn("compacting the archive failed; the next maintenance retries", "source", src.Name, "date", d.Format(time.DateOnly), "err", err)
	}
	return err == nil
}

// forget clears what the journal wrote to a date since it was compacted.
func (s *Spool) forget(k dateKey) {
	s.fmu.Lock()
	delete(s.touched, k)
	s.fmu.Unlock()
}

// maintain compacts every date of every source that has ended and holds
// more than one file, or holds CompactFiles files, and deletes the dates
// retention no longer keeps.
func (s *Spool) maintain(ctx context.Context) {
	now := s.opts.Now()
	today := now.UTC().Truncate(24 * time.Hour)
	for _, src := range s.opts.Project.Sources {
		if src.ArchiveRetain > 0 {
			if err := s.opts.Archive.Retain(ctx, src, src.ArchiveRetain, now); err != nil {
				s.opts.Logger.Warn("applying the archive's retention failed; the next maintenance retries", "source", src.Name, "err", err)
			}
		}
		dates, err := s.opts.Archive.Dates(ctx, src)
		if err != nil {
			s.opts.Logger.Warn("listing the archive failed", "source", src.Name, "err", err)
			continue
		}
		for _, d := range dates {
			files, err := s.opts.Archive.Files(ctx, src, d)
			if err != nil || len(files) < 2 || (!d.Before(today) && len(files) < s.opts.CompactFiles) {
				continue
			}
			// One Compact merges a bounded amount (archive.CompactInput):
			// go on while it makes progress, a few rounds at most.
			failed := false
			for round := 0; round < 8; round++ {
				if !s.compact(ctx, src, d) {
					if ctx.Err() != nil {
						return // stopping
					}
					failed = true
					break
				}
				after, err := s.opts.Archive.Files(ctx, src, d)
				if err != nil || len(after) >= len(files) {
					break
				}
				files = after
			}
			if !failed {
				s.forget(dateKey{src.Name, d.Format(time.DateOnly)})
			}
		}
	}
}

package spool

import "context"

// crash stops the spool's goroutines where they are, as a crash would:
// the newest segment is not closed and nothing more is archived.
func (s *Spool) crash() {
	close(s.kill)
	<-s.stopped
	close(s.flushStop)
	<-s.flushDone
}

// maintainNow runs the flusher's maintenance: compaction and retention.
func (s *Spool) maintainNow(ctx context.Context) { s.compactTouched(ctx, true); s.maintain(ctx) }

// tryFlush closes the newest segment and waits until the flusher has
// archived it or failed to.
func (s *Spool) tryFlush() {
	reply := make(chan uint64, 1)
	s.rollReq <- reply
	upTo := <-reply
	for {
		s.fmu.Lock()
		done, ch := s.archived >= upTo || s.flushErr != nil, s.progress
		s.fmu.Unlock()
		if done {
			return
		}
		<-ch
	}
}

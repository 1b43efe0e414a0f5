package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-dev/kiln/internal/definition"
	"github.com/kiln-dev/kiln/internal/metrics"
	"github.com/kiln-dev/kiln/internal/rowcache"
)

// collector exposes the counters the node's parts already keep, read when
// Prometheus scrapes: nothing is added to a request or a push for them.
type collector struct {
	n     *Node
	cache *rowcache.Cache // nil without a row cache
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metrics.Namespace+"_"+name, help, labels, nil)
}

var (
	descValuesServed = desc("read_values_served_total", "Feature values the read path answered (keys times features, over every request, HTTP and gRPC).")
	descRefused      = desc("read_refused_total", "Reads refused by admission control (429 / RESOURCE_EXHAUSTED): their queue had stood above --admission-target for --admission-interval.")
	descRunning      = desc("read_running", "Reads holding one of the --max-concurrent-reads slots.")
	descQueued       = desc("read_queued", "Reads waiting for a slot.")
	descOverloaded   = desc("read_overloaded", "1 while admission control finds the server overloaded and refuses reads.")

	descCacheHits      = desc("rowcache_hits_total", "Row keys the row cache answered from memory (cached absences included).")
	descCacheMisses    = desc("rowcache_misses_total", "Row keys the row cache did not answer from memory.")
	descCacheEvictions = desc("rowcache_evictions_total", "Rows the row cache removed to make room.")
	descCacheExpired   = desc("rowcache_expired_total", "Lookups that found a row older than the staleness bound (each also a miss).")
	descCacheCoalesced = desc("rowcache_coalesced_total", "Missed keys that waited for another reader's load of the same row.")
	descCacheLoads     = desc("rowcache_loads_total", "Batched reads of the rows the row cache missed.")
	descCacheBytes     = desc("rowcache_bytes", "Bytes the row cache holds.")
	descCacheEntries   = desc("rowcache_entries", "Rows the row cache holds.")

	descEvents      = desc("ingest_events_total", "Events of a source the write path took, pushed or streamed: accepted (reached a row) or late (older than every window it feeds, dropped).", "source", "outcome")
	descRowsWritten = desc("ingest_rows_written_total", "Rows the write path wrote to the store.")
	descConflicts   = desc("ingest_write_conflicts_total", "Rows another process changed between this one's read and write, folded again (Redis).")
	descCheckpoints = desc("ingest_checkpoints_total", "Checkpoints: rows written back with the event log deleted (embedded store, write-behind).")
	descReplayed    = desc("ingest_replayed_total", "Row updates passed over because the row had already applied the streamed event (a replay after a restart or rebalance).")
	descWrites      = desc("store_writes_total", "Writes of the write path to the store: commits, event-log appends, checkpoints.")
	descWriteErrors = desc("store_write_errors_total", "Writes of the write path to the store that failed.")

	descMessages    = desc("stream_messages_total", "Messages of a streaming source applied or sent to the dead letters.", "source")
	descDeadLetters = desc("stream_dead_letters_total", "Messages of a streaming source rejected (undecodable, too large, too old) and sent to its dead letters.", "source")
	descLag         = desc("stream_lag_messages", "Messages in a partition past the last one applied, as the broker last reported its end (absent until known).", "source", "partition")
	descLastEvent   = desc("stream_last_event_timestamp_seconds", "Newest event time applied from a partition.", "source", "partition")
	descLastApply   = desc("stream_last_apply_timestamp_seconds", "When a batch of a partition was last made durable.", "source", "partition")
	descFreshness   = desc("stream_freshness_seconds", "Time from the broker taking a message to its event being durable and readable, over every message applied since start.", "source")

	descJournalEvents    = desc("archive_journal_events_total", "Events written to the archive's journal.")
	descJournalBytes     = desc("archive_journal_bytes_total", "Bytes written and synced to the archive's journal.")
	descSegmentsArchived = desc("archive_segments_archived_total", "Journal segments turned into archive files.")
	descEventsArchived   = desc("archive_events_archived_total", "Events the journal wrote to the archive.")
	descSegmentsPending  = desc("archive_segments_pending", "Closed journal segments waiting to be archived.")
	descArchiveFailures  = desc("archive_failures_total", "Failed attempts to archive a journal segment (each retried).")
	descLastArchived     = desc("archive_last_flush_timestamp_seconds", "When a journal segment was last archived (absent before the first).")

	descRebuildDone     = desc("rebuild_dates_done", "Dates of the archive a view's rebuild has replayed.", "view")
	descRebuildTotal    = desc("rebuild_dates", "Dates of the archive a view's rebuild replays.", "view")
	descRebuildReplayed = desc("rebuild_events_replayed", "Events a view's rebuild has replayed.", "view")
	descRebuildFailed   = desc("rebuild_failed", "1 if a view's rebuild failed (the log says why).", "view")
)

var allDescs = []*prometheus.Desc{
	descValuesServed, descRefused, descRunning, descQueued, descOverloaded,
	descCacheHits, descCacheMisses, descCacheEvictions, descCacheExpired, descCacheCoalesced, descCacheLoads, descCacheBytes, descCacheEntries,
	descEvents, descRowsWritten, descConflicts, descCheckpoints, descReplayed, descWrites, descWriteErrors,
	descMessages, descDeadLetters, descLag, descLastEvent, descLastApply, descFreshness,
	descJournalEvents, descJournalBytes, descSegmentsArchived, descEventsArchived, descSegmentsPending, descArchiveFailures, descLastArchived,
	descRebuildDone, descRebuildTotal, descRebuildReplayed, descRebuildFailed,
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	seconds := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	n := c.n
	if n.Engine != nil {
		st := n.Engine.Stats()
		counter(descValuesServed, float64(st.ValuesServed))
	}
	if n.Admission != nil {
		st := n.Admission.Stats()
		counter(descRefused, float64(st.Refused))
		gauge(descRunning, float64(st.Running))
		gauge(descQueued, float64(st.Queued))
		gauge(descOverloaded, one(st.Overloaded))
	}
	if c.cache != nil {
		st := c.cache.Stats()
		counter(descCacheHits, float64(st.Hits))
		counter(descCacheMisses, float64(st.Misses))
		counter(descCacheEvictions, float64(st.Evictions))
		counter(descCacheExpired, float64(st.Expired))
		counter(descCacheCoalesced, float64(st.Coalesced))
		counter(descCacheLoads, float64(st.Loads))
		gauge(descCacheBytes, float64(st.Bytes))
		gauge(descCacheEntries, float64(st.Entries))
	}
	if n.Writer != nil {
		st := n.Writer.Stats()
		for src, sc := range st.BySource {
			counter(descEvents, float64(sc.Accepted), src, "accepted")
			counter(descEvents, float64(sc.DroppedLate), src, "late")
		}
		counter(descRowsWritten, float64(st.RowsWritten))
		counter(descConflicts, float64(st.Conflicts))
		counter(descCheckpoints, float64(st.Checkpoints))
		counter(descReplayed, float64(st.Replayed))
		counter(descWrites, float64(st.Writes))
		counter(descWriteErrors, float64(st.WriteErrors))
	}
	for _, a := range n.sources {
		st := a.Stats()
		counter(descMessages, float64(st.Messages), st.Source)
		counter(descDeadLetters, float64(st.DeadLetters), st.Source)
		for _, p := range st.Partitions {
			if p.Lag >= 0 {
				gauge(descLag, float64(p.Lag), st.Source, p.Partition)
			}
			if p.LastEventTime > 0 {
				gauge(descLastEvent, float64(p.LastEventTime)/1e3, st.Source, p.Partition)
			}
			if !p.LastApply.IsZero() {
				gauge(descLastApply, seconds(p.LastApply), st.Source, p.Partition)
			}
		}
		f := st.Freshness
		ch <- prometheus.MustNewConstSummary(descFreshness, uint64(f.Count), f.Mean*float64(f.Count)/1e3,
			map[float64]float64{0.5: f.P50 / 1e3, 0.99: f.P99 / 1e3, 0.999: f.P999 / 1e3, 1: f.Max / 1e3}, st.Source)
	}
	if n.Journal != nil {
		st := n.Journal.Stats()
		counter(descJournalEvents, float64(st.EventsJournaled))
		counter(descJournalBytes, float64(st.BytesJournaled))
		counter(descSegmentsArchived, float64(st.SegmentsArchived))
		counter(descEventsArchived, float64(st.EventsArchived))
		gauge(descSegmentsPending, float64(st.SegmentsPending))
		counter(descArchiveFailures, float64(st.ArchiveFailures))
		if !st.LastArchived.IsZero() {
			gauge(descLastArchived, seconds(st.LastArchived))
		}
	}
	for _, rb := range n.rebuilds.list() {
		gauge(descRebuildDone, float64(rb.DatesDone), rb.View)
		gauge(descRebuildTotal, float64(rb.DatesTotal), rb.View)
		gauge(descRebuildReplayed, float64(rb.EventsReplayed), rb.View)
		gauge(descRebuildFailed, one(rb.Error != ""), rb.View)
	}
}

// one is a gauge's value for a condition: 1 when it holds, else 0.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// storeReads times the row cache's reads of the store (its misses), in
// kiln_store_read_duration_seconds, and counts those that failed.
type storeReads struct {
	latency prometheus.Histogram
	errors  prometheus.Counter
}

func newStoreReads(reg prometheus.Registerer) *storeReads {
	s := &storeReads{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "store_read_duration_seconds",
			Help:    "Time of one batched read of rows the row cache missed, from the store (or the write path's rows not yet written back).",
			Buckets: metrics.LatencyBuckets,
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "store_read_errors_total",
			Help: "Batched reads of rows that failed.",
		}),
	}
	reg.MustRegister(s.latency, s.errors)
	return s
}

// wrap times load.
func (s *storeReads) wrap(load rowcache.LoadFunc) rowcache.LoadFunc {
	return func(ctx context.Context, keys [][]byte, fn func(i int, value []byte, found bool)) error {
		start := time.Now()
		err := load(ctx, keys, fn)
		s.latency.Observe(time.Since(start).Seconds())
		if err != nil {
			s.errors.Inc()
		}
		return err
	}
}

// storeWriteLatency is kiln_store_write_duration_seconds.
func storeWriteLatency(reg prometheus.Registerer) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Name: "store_write_duration_seconds",
		Help:    "Time of one write of the write path to the store: a commit's rows, an event-log append or a checkpoint.",
		Buckets: metrics.LatencyBuckets,
	})
	reg.MustRegister(h)
	return h
}

// adHocService is the service label of reads of a list of features.
const adHocService = "(features)"

// serviceReads registers the read path's instruments by service,
// kiln_read_duration_seconds{service} and
// kiln_read_service_values_total{service}, and returns the
// query.Config.ObserveRead that feeds them. Every service of the project
// has its instruments looked up here, once: a read pays a map lookup, a
// histogram observation and a counter addition, and allocates nothing.
func serviceReads(reg prometheus.Registerer, p *definition.Project) func(string, int, time.Duration) {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Name: "read_duration_seconds",
		Help:    "Time the read path took to answer a read (the row cache, the store and evaluation; not the request's decoding), by service; \"(features)\" for lists of features.",
		Buckets: metrics.LatencyBuckets,
	}, []string{"service"})
	values := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "read_service_values_total",
		Help: "Feature values the read path answered, by service; \"(features)\" for lists of features.",
	}, []string{"service"})
	reg.MustRegister(duration, values)
	type instruments struct {
		duration prometheus.Observer
		values   prometheus.Counter
	}
	by := map[string]instruments{}
	for _, s := range append([]string{adHocService}, serviceNames(p)...) {
		by[s] = instruments{duration.WithLabelValues(s), values.WithLabelValues(s)}
	}
	by[""] = by[adHocService]
	return func(service string, n int, d time.Duration) {
		if in, ok := by[service]; ok {
			in.duration.Observe(d.Seconds())
			in.values.Add(float64(n))
		}
	}
}

func serviceNames(p *definition.Project) []string {
	names := make([]string, 0, len(p.Services))
	for _, s := range p.Services {
		names = append(names, s.Name)
	}
	return names
}

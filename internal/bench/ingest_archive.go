package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"text/tabwriter"
)

// ArchivePhase is the cost of the event archive on the push path: the push
// phase run alternately without the archive (--archive none) and with it
// (the server's defaults), on fresh data directories. At the push phase's
// rates the journal fills a segment every second or two, so the
// archive's work — journal, Parquet files — falls in the measured window as
// it does in steady state; at these rates the files are large enough that
// compaction leaves them alone.
type ArchivePhase struct {
	Rounds int          `json:"rounds"`
	Off    []Throughput `json:"without_archive"`
	On     []Throughput `json:"with_archive"`
	// OffPerCore and OnPerCore are the medians of events/s per server
	// core; Cost is 1 − On/Off, the share of push throughput per core the
	// archive takes (the aim: at most AimArchiveCost).
	OffPerCore float64 `json:"without_events_per_core_second"`
	OnPerCore  float64 `json:"with_events_per_core_second"`
	Cost       float64 `json:"cost"`
	// ArchiveBytes is the size of the last run's archive (Parquet files),
	// per event archived.
	ArchiveBytesPerEvent float64 `json:"archive_bytes_per_event"`
}

// AimArchiveCost is the most of the push path's throughput per core that
// archiving may take.
const AimArchiveCost = 0.2

func (r *ingestRun) archivePhase(ctx context.Context) (*ArchivePhase, error) {
	a := &ArchivePhase{Rounds: r.cfg.ArchiveRounds}
	off := append(slices.Clone(r.argv), "--archive", "none")
	on := slices.Clone(r.argv)
	var lastDir string
	for i := range r.cfg.ArchiveRounds {
		for _, with := range []bool{false, true} {
			label, argv := fmt.Sprintf("archive round %d without", i+1), off
			if with {
				label, argv = fmt.Sprintf("archive round %d with", i+1), on
			}
			dir := filepath.Join(r.dataDir, fmt.Sprintf("archive-%d-%v", i, with))
			p, err := r.pushRun(ctx, argv, dir, label)
			if err != nil {
				return nil, err
			}
			if with {
				a.On = append(a.On, p.Throughput)
				lastDir = dir
			} else {
				a.Off = append(a.Off, p.Throughput)
			}
		}
	}
	perCore := func(ts []Throughput) float64 {
		v := make([]float64, len(ts))
		for i, t := range ts {
			v[i] = t.EventsPerCoreS
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	a.OffPerCore, a.OnPerCore = perCore(a.Off), perCore(a.On)
	a.Cost = 1 - ratio(a.OnPerCore, a.OffPerCore)
	if last := a.On[len(a.On)-1]; last.Events > 0 {
		a.ArchiveBytesPerEvent = float64(dirBytes(filepath.Join(lastDir, "archive"))) / float64(last.Events)
	}
	return a, nil
}

func (a *ArchivePhase) printSummary(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "archive phase\tround\tevents/s\tsrv cores\tevents/s per core\t")
	for i := range a.Off {
		fmt.Fprintf(tw, "without archive\t%d\t%.0f\t%.2f\t%.0f\t\n", i+1, a.Off[i].EventsPerS, a.Off[i].ServerCores, a.Off[i].EventsPerCoreS)
		fmt.Fprintf(tw, "with archive\t%d\t%.0f\t%.2f\t%.0f\t\n", i+1, a.On[i].EventsPerS, a.On[i].ServerCores, a.On[i].EventsPerCoreS)
	}
	tw.Flush()
	fmt.Fprintf(w, "archive: median %.0f events/s per core without, %.0f with: the archive costs %.1f%% of push throughput per core (aim ≤ %.0f%%: %s); %.1f bytes of Parquet per event\n",
		a.OffPerCore, a.OnPerCore, 100*a.Cost, 100*AimArchiveCost, yesNo(a.Cost <= AimArchiveCost), a.ArchiveBytesPerEvent)
}

//go:build race

package archive

// raceEnabled: the race detector slows the Parquet codec about tenfold, so
// the property test runs fewer checks under it (see TestProperty).
const raceEnabled = true

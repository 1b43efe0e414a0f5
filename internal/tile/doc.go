// Package tile owns Kiln's aggregation engine: the window rule, the tiles
// that hold partial aggregates, and the row that packs all tiles of one
// (feature view, entity) into one compact, versioned value.
//
// The window rule is Window.Start: a window of length W with hop h,
// evaluated at time t, covers the events with floor(t−W, h) ≤ ts ≤ t. Every
// path that computes a value (serving, backfill, training sets, and the
// reference model in the tests) uses it.
//
// Compile turns a definition.View into a Plan. The plan gives each distinct
// window length a level of tiles of size h; a tile keeps, per feature, an
// intermediate state that merges exactly (count; sum; mean as sum and
// count; min; max). Features without a window live on one all-time tile;
// "last" keeps the latest (event time, value) pair.
//
// The caller drives time: Fold adds an event at a given "now", Advance moves
// a row's clock (folding events that were in the future, dropping tiles no
// window can reach), Eval computes the served values at a time. Nothing here
// reads a clock, does I/O or locks; a Row is owned by one goroutine at a time.
package tile

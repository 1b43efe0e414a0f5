package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/rueidis"

	"github.com/kiln-dev/kiln/internal/store"
)

// casScript sets KEYS[1] to ARGV[2] if it holds ARGV[1] (the empty string:
// if it does not exist) and answers 1, or answers 0 and changes nothing.
//
// It does not answer 1 when the key already holds ARGV[2]: two writers can
// compute the same bytes from the same old value (the same events folded at
// the same clock), and the second must learn that its update is not in.
// So the command is not retryable: rueidis does not resend it after a
// broken connection, and the caller sees an error instead (any subset of
// the batch may then have been written, as for Write).
const casScript = `local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`

var casSHA = func() string {
	sum := sha1.Sum([]byte(casScript))
	return hex.EncodeToString(sum[:])
}()

var _ store.ConditionalWriter = (*Store)(nil)

// WriteIf writes each row of batch only if the store still holds the row's
// Old value (or no row, when Old is nil), atomically per row, and calls
// conflict(i) for each row i it did not write because another writer had
// changed it (store.ConditionalWriter). Rows are independent: some may be
// written while others conflict. Several processes may write the same rows
// this way without one losing another's update.
//
// It runs a Lua script per row (EVALSHA), loading the script on every node
// the first time a node does not know it. An error has the meaning of
// Write's: any subset of the batch may have been written.
func (s *Store) WriteIf(ctx context.Context, batch []store.CondKV, conflict func(i int)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, err := s.begin(ctx, "write", len(batch))
	if c == nil {
		return err
	}
	size := 0
	for _, kv := range batch {
		size += len(kv.Key) + len(kv.Value) + len(kv.Old)
	}
	req := newRequest(len(batch), size)
	for i, kv := range batch {
		req.cmds[i] = c.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(req.str(kv.Key)).
			Arg(req.str(kv.Old), req.str(kv.Value)).Build()
	}
	cctx, cancel := s.callContext(ctx)
	defer cancel()
	resps, err := s.do(cctx, c, req)
	if err != nil {
		return s.callError(ctx, fmt.Sprintf("conditional write of %d rows", len(batch)), err)
	}
	if again := noScript(resps); len(again) > 0 {
		// Nodes without the script (a new node, a restarted or failed-over
		// one) ran none of those rows: load it everywhere and run just those
		// rows again. (Running the others again would turn their success
		// into a conflict.)
		if err := s.loadScript(cctx, c); err != nil {
			return s.callError(ctx, fmt.Sprintf("loading the write script for %d rows", len(again)), err)
		}
		resps = slices.Clone(resps) // the second do reuses req's results
		retry := &request{cmds: make([]rueidis.Completed, len(again))}
		for j, i := range again {
			kv := batch[i]
			retry.cmds[j] = c.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(req.str(kv.Key)).
				Arg(req.str(kv.Old), req.str(kv.Value)).Build()
		}
		resps2, err := s.do(cctx, c, retry)
		if err != nil {
			return s.callError(ctx, fmt.Sprintf("conditional write of %d rows", len(again)), err)
		}
		for j, r := range resps2 {
			resps[again[j]] = r
		}
	}
	failed, first, firstErr := 0, 0, error(nil)
	for i, r := range resps {
		n, err := r.AsInt64()
		if err != nil {
			if failed == 0 {
				first, firstErr = i, err
			}
			failed++
			continue
		}
		if n == 0 && conflict != nil {
			conflict(i)
		}
	}
	if failed > 0 {
		return s.callError(ctx, fmt.Sprintf("conditional write of %d rows (%d failed, the first row %d)", len(batch), failed, first), firstErr)
	}
	req.release(resps)
	return nil
}

// noScript returns the indices of the answers that say the node did not
// know the script.
func noScript(resps []rueidis.RedisResult) []int {
	var idx []int
	for i, r := range resps {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			idx = append(idx, i)
		}
	}
	return idx
}

// loadScript loads casScript on every node the client knows.
func (s *Store) loadScript(ctx context.Context, c rueidis.Client) error {
	for _, n := range c.Nodes() {
		if err := n.Do(ctx, n.B().ScriptLoad().Script(casScript).Build()).Error(); err != nil {
			return err
		}
	}
	return nil
}

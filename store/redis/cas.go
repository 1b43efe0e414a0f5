package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/redis/rueidis"

	"github.com/kiln-dev/kiln/store"
)

// casScript sets KEYS[1] to ARGV[2] if it holds ARGV[1] (the empty string:
// if it does not exist). It answers 1 when the key holds ARGV[2] afterwards:
// also when it already did, so a resend after a lost answer is harmless.
const casScript = `local cur = redis.call('GET', KEYS[1])
if cur == ARGV[2] then return 1 end
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`

var casSHA = func() string {
	sum := sha1.Sum([]byte(casScript))
	return hex.EncodeToString(sum[:])
}()

// WriteIf writes each row of batch only if the store still holds the row's
// Old value (or no row, when Old is nil), atomically per row, and calls
// conflict(i) for each row i it did not write because another writer had
// changed it. Rows are independent: some may be written while others
// conflict. Several processes may write the same rows this way without one
// losing another's update.
//
// It runs a Lua script per row (EVALSHA), loading the script on every node
// the first time a node does not know it. An error has the meaning of
// Write's: any subset of the batch may have been written.
func (s *Store) WriteIf(ctx context.Context, batch []store.CondKV, conflict func(i int)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.client
	if c == nil {
		return store.ErrClosed
	}
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/redis: write: %w", err)
	}
	size := 0
	for _, kv := range batch {
		size += len(kv.Key) + len(kv.Value) + len(kv.Old)
	}
	req := newRequest(len(batch), size)
	for i, kv := range batch {
		req.cmds[i] = c.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(req.str(kv.Key)).
			Arg(req.str(kv.Old), req.str(kv.Value)).Build().ToRetryable()
	}
	cctx, cancel := s.callContext(ctx)
	defer cancel()
	resps := c.DoMulti(cctx, req.cmds...)
	if noScript(resps) {
		// A node without the script (a new node, a restarted or failed-over
		// one): load it everywhere and run the batch again. Rows already
		// written answer 1 again, since they hold their new value.
		if err := s.loadScript(cctx, c); err != nil {
			return s.callError(ctx, fmt.Sprintf("loading the write script for %d rows", len(batch)), err)
		}
		for i, kv := range batch {
			req.cmds[i] = c.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(req.str(kv.Key)).
				Arg(req.str(kv.Old), req.str(kv.Value)).Build().ToRetryable()
		}
		resps = c.DoMulti(cctx, req.cmds...)
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

func noScript(resps []rueidis.RedisResult) bool {
	for _, r := range resps {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
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

package bench

// The overload step: Kiln offered multiples of its saturation rate.

import (
	"context"
	"fmt"
)

// overload measures q's saturation rate S, then Kiln at S/2 and at each
// overload factor × S, open loop.
func (b *rw1) overload(ctx context.Context, q *querySet) error {
	sat, err := b.saturationWith(ctx, q, max(b.cfg.SaturationWorkers, overloadWorkers))
	if err != nil {
		return err
	}
	if sat.Achieved <= 0 {
		return fmt.Errorf("bench: %s achieved nothing at saturation (%d errors; first: %s)", q.name, sat.Errors, sat.FirstError)
	}
	half, err := b.openStep(ctx, q, targetKiln, sat.Achieved/2)
	if err != nil {
		return err
	}
	for _, f := range b.cfg.OverloadFactors {
		s, err := b.openStepWith(ctx, q, targetKiln, f*sat.Achieved, max(b.cfg.MaxInFlight, overloadMaxInFlight))
		if err != nil {
			return err
		}
		o := OverloadResult{
			Query: q.name, Transport: s.Transport, SaturationRPS: sat.Achieved, Factor: f, Offered: s.Offered,
			AdmittedRPS: s.Achieved, Goodput: ratio(s.Achieved, sat.Achieved),
			RefusedFraction: ratio(float64(s.Refused), float64(s.Refused+s.Requests)),
			AdmittedP99MS:   s.Latency.P99, HalfP99MS: half.Latency.P99, Errors: s.Errors,
		}
		if s.RefusedLatency != nil {
			o.RefusedP99MS, o.RefusedServiceP99MS = s.RefusedLatency.P99, s.RefusedServiceTime.P99
		}
		b.rep.Overload = append(b.rep.Overload, o)
		fmt.Fprintf(b.log, "kiln-bench: %s at %g× saturation: %.0f%% refused, refusals p99 %.3f ms, admitted p99 %.3f ms (%.3f at half), goodput %.0f%%\n",
			q.name, f, 100*o.RefusedFraction, o.RefusedP99MS, o.AdmittedP99MS, o.HalfP99MS, 100*o.Goodput)
	}
	return nil
}

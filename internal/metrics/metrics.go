// Package metrics owns Kiln's Prometheus metrics: the registry a process
// serves on its admin listener's /metrics (its own, never the global one),
// with the Go runtime's and the process's collectors and kiln_build_info;
// and the instruments of the APIs' requests (a count by route and status, a
// latency histogram by route), made once per route at start so that a
// request allocates nothing for them.
//
// The numbers the parts already keep (the write path's, the read path's,
// the row cache's, the streaming sources', the journal's) are not copied
// into instruments: package node registers a collector that reads them when
// Prometheus scrapes.
package metrics

import (
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-dev/kiln/internal/version"
)

// Namespace prefixes every metric Kiln defines.
const Namespace = "kiln"

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms: fine below a millisecond, where reads are served, and coarse
// up to the 10 s a request may last.
var LatencyBuckets = []float64{
	0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// runtimeHistograms are the runtime/metrics histograms exported beside the
// Go collector's defaults: every stop-the-world pause of the collector and
// how long goroutines wait to run, the two stalls behind a tail latency.
var runtimeHistograms = regexp.MustCompile(`^/gc/pauses:seconds$|^/sched/latencies:seconds$|^/sched/pauses/total/gc:seconds$`)

// NewRegistry returns a registry holding the Go runtime's collector (with
// the GC pause and scheduler latency histograms as go_gc_pauses_seconds and
// go_sched_latencies_seconds), the process's (CPU, memory, file
// descriptors) and kiln_build_info.
func NewRegistry(build version.Info) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: runtimeHistograms})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help:        "A constant 1, labelled with the running binary's version, VCS revision and Go version.",
			ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Handler serves reg in the Prometheus text or OpenMetrics format, as the
// scraper asks; an error collecting a metric goes to log.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Registry:          reg, // promhttp_metric_handler_errors_total
	})
}

// Requests are the instruments of one API: <api>_requests_total by the
// route's labels and the answer's code, and <api>_request_duration_seconds
// by the route's labels.
type Requests struct {
	count    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// codeName names a status code as the code label shows it.
	codeName func(code int) string
}

// NewRequests registers the instruments of the API named api ("http",
// "grpc") on reg; labels name what identifies a route (the route, or the
// service and method), and codeName spells a status code.
func NewRequests(reg prometheus.Registerer, api, what string, labels []string, codeName func(int) string) *Requests {
	r := &Requests{
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: api, Name: "requests_total",
			Help: what + " requests answered, by " + joinLabels(labels) + " and status code.",
		}, append(append([]string(nil), labels...), "code")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: api, Name: "request_duration_seconds",
			Help:    "Time from " + what + " request to answer, by " + joinLabels(labels) + ".",
			Buckets: LatencyBuckets,
		}, labels),
		codeName: codeName,
	}
	reg.MustRegister(r.count, r.duration)
	return r
}

func joinLabels(labels []string) string {
	s := ""
	for i, l := range labels {
		switch {
		case i == 0:
		case i == len(labels)-1:
			s += " and "
		default:
			s += ", "
		}
		s += l
	}
	return s
}

// HTTPCode spells an HTTP status code: "200".
func HTTPCode(code int) string { return strconv.Itoa(code) }

// maxCode bounds the codes a Route keeps a counter for without a lookup:
// every HTTP status and every gRPC code is below it.
const maxCode = 600

// Route returns the instruments of one route, its label values looked up
// once: observing a request then costs a histogram observation and a
// counter increment, and allocates nothing once the route has answered a
// code before. Its latency series starts at zero.
func (r *Requests) Route(labels ...string) *Route {
	rt := &Route{r: r, labels: labels, duration: r.duration.WithLabelValues(labels...)}
	return rt
}

// Route is one route's instruments. It is safe for concurrent use.
type Route struct {
	r        *Requests
	labels   []string
	duration prometheus.Observer
	// codes holds the counter of each code the route has answered, made
	// at its first answer.
	codes [maxCode]atomic.Pointer[prometheus.Counter]
}

// Observe counts an answer with code that took seconds.
func (rt *Route) Observe(code int, seconds float64) {
	rt.duration.Observe(seconds)
	rt.Counter(code).Inc()
}

// Counter returns the route's counter of answers with code.
func (rt *Route) Counter(code int) prometheus.Counter {
	if code < 0 || code >= maxCode {
		return rt.r.count.WithLabelValues(append(rt.labels[:len(rt.labels):len(rt.labels)], rt.r.codeName(code))...)
	}
	if c := rt.codes[code].Load(); c != nil {
		return *c
	}
	c := rt.r.count.WithLabelValues(append(rt.labels[:len(rt.labels):len(rt.labels)], rt.r.codeName(code))...)
	rt.codes[code].CompareAndSwap(nil, &c)
	return c
}

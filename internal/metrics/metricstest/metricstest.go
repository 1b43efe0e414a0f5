// Package metricstest reads a real /metrics endpoint in tests: it scrapes
// the text format, parses it with Prometheus' own parser and looks up
// samples by name and labels.
package metricstest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one scrape: the metric families by name.
type Scrape map[string]*dto.MetricFamily

// Get scrapes url (an admin listener's /metrics) and parses what it
// answers; it fails tb if the answer is not valid.
func Get(tb testing.TB, url string) Scrape {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return fams
}

// Value returns the value of the sample of name with the labels (pairs of
// name and value; others may be present): a counter's or gauge's value, a
// histogram's or summary's count. ok is false when there is none.
func (s Scrape) Value(name string, labels ...string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		if matches(m, labels) {
			return value(m), true
		}
	}
	return 0, false
}

// value is a sample's value: a counter's or gauge's, a histogram's or
// summary's count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// Must is Value that fails tb when there is no such sample.
func (s Scrape) Must(tb testing.TB, name string, labels ...string) float64 {
	tb.Helper()
	v, ok := s.Value(name, labels...)
	if !ok {
		tb.Fatalf("no sample %s{%s} in the scrape", name, strings.Join(labels, ","))
	}
	return v
}

// Sum adds the values of every sample of name with the labels.
func (s Scrape) Sum(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
	total := 0.0
	for _, m := range f.Metric {
		if matches(m, labels) {
			total += value(m)
		}
	}
	return total
}

func matches(m *dto.Metric, labels []string) bool {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("metricstest: labels %q are not name-value pairs", labels))
	}
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Post POSTs a JSON body to url and fails tb unless it answers 200.
func Post(tb testing.TB, url, body string) {
	tb.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
}

package eventjson

import (
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/internal/definition"
)

// Event times: epoch milliseconds or RFC 3339, and the earliest a source accepts.

// tooEarly says why event time ts, written raw, of src is refused: it is
// before the source's min_event_time. An integer that is a plausible time
// once multiplied by 1000 is most likely seconds since 1970 (date +%s), and
// the message says to send milliseconds.
func tooEarly(src *definition.Source, raw []byte, ts int64) string {
	msg := fmt.Sprintf("event time %s is before %s (min_event_time of source %s)", truncate(raw), formatFloor(src.MinEventTime), src.Name)
	if raw[0] != '"' && ts <= maxTS/1000 && ts*1000 >= src.MinEventTime {
		return msg + fmt.Sprintf("; it looks like seconds since 1970: send milliseconds (%d)", ts*1000)
	}
	return msg + `; send the time as epoch milliseconds or RFC 3339, or lower min_event_time`
}

// formatFloor writes a min_event_time as the project file may: a date when
// it is midnight UTC.
func formatFloor(ms int64) string {
	if ms%(24*3600*1000) == 0 {
		return time.UnixMilli(ms).UTC().Format(time.DateOnly)
	}
	return formatTS(ms)
}

func formatTS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// parseTime reads an event time (raw, valid JSON): an RFC 3339 string or
// integer epoch ms. plain says a string's contents need no unquoting.
func parseTime(raw []byte, plain bool) (int64, string) {
	const want = `write the event time as RFC 3339 ("2026-11-26T10:00:00Z") or integer epoch milliseconds`
	if raw[0] == '"' {
		s := raw[1 : len(raw)-1]
		if !plain {
			var buf [64]byte
			s = unquote(buf[:0], s)
		}
		ms, year, ok := parseRFC3339(s)
		if !ok { // time.Parse may take it all the same, e.g. "…T10:00:00,5Z"
			t, err := time.Parse(time.RFC3339Nano, string(s))
			if err != nil {
				return 0, fmt.Sprintf("%q is not an RFC 3339 time; %s", s, want)
			}
			ms, year = t.UnixMilli(), t.Year()
		}
		// The year as written, and the instant: "1970-01-01T00:30:00+01:00"
		// is in 1970 as written but before the epoch in UTC.
		if year < 1970 || ms < 0 || ms > maxTS {
			return 0, fmt.Sprintf("%q is outside 1970–9999", s)
		}
		return ms, ""
	}
	ms, ok := parseShortInt(raw)
	if !ok {
		var err error
		if ms, err = strconv.ParseInt(string(raw), 10, 64); err != nil {
			return 0, fmt.Sprintf("%s is not a time; %s", truncate(raw), want)
		}
	}
	if ms < 0 || ms > maxTS {
		return 0, fmt.Sprintf("%d epoch milliseconds is outside 1970–9999", ms)
	}
	return ms, ""
}

// parseRFC3339 is time.Parse's fast path for layout RFC3339Nano
// (parseRFC3339 in time/format_rfc3339.go), on bytes and without
// allocating: the time in Unix ms and its year as written. When it is not
// ok, time.Parse may still accept s by its general rules.
func parseRFC3339(s []byte) (ms int64, year int, ok bool) {
	ok = true
	num := func(s []byte, lo, hi int) int {
		x := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
			return lo
		}
		return x
	}
	if len(s) < len("2006-01-02T15:04:05") {
		return 0, 0, false
	}
	year = num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, daysIn(time.Month(month), year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, 0, false
	}
	s = s[19:]
	nsec := 0
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		n := 2
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		for k := 1; k < 10; k++ { // nine digits; more are ignored
			nsec *= 10
			if k < n {
				nsec += int(s[k] - '0')
			}
		}
		s = s[n:]
	}
	offset := 0
	if len(s) != 1 || s[0] != 'Z' {
		if len(s) != len("-07:00") {
			return 0, 0, false
		}
		hh := num(s[1:3], 0, 23)
		mm := num(s[4:6], 0, 59)
		if !ok || (s[0] != '-' && s[0] != '+') || s[3] != ':' {
			return 0, 0, false
		}
		if offset = (hh*60 + mm) * 60; s[0] == '-' {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.UnixMilli() - int64(offset)*1000, year, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

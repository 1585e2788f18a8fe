package connmgr

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestWSOverflowsLog: every overflow close is counted; warnings name the
// connection at most once per wsOverflowWarnEvery (the rest counted as
// suppressed in the next one), and the summary reports the closes of each
// period that had any.
func TestWSOverflowsLog(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Unix(1000, 0)
	o := newWSOverflows(zerolog.New(&buf), t0)
	lines := func() []string {
		defer buf.Reset()
		return strings.FieldsFunc(buf.String(), func(r rune) bool { return r == '\n' })
	}

	o.closed("c-1", t0)
	o.closed("c-2", t0.Add(100*time.Millisecond))
	o.closed("c-3", t0.Add(200*time.Millisecond))
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], `"conn":"c-1"`) || !strings.Contains(got[0], `"overflows_total":1`) ||
		!strings.Contains(got[0], `"level":"warn"`) || strings.Contains(got[0], "suppressed") {
		t.Fatalf("first warning: %q", got)
	}
	o.closed("c-4", t0.Add(wsOverflowWarnEvery))
	got = lines()
	if len(got) != 1 || !strings.Contains(got[0], `"conn":"c-4"`) || !strings.Contains(got[0], `"suppressed":2`) ||
		!strings.Contains(got[0], `"overflows_total":4`) {
		t.Fatalf("second warning: %q", got)
	}
	if n := o.total.Load(); n != 4 {
		t.Fatalf("total %d, want 4", n)
	}

	o.summary(t0.Add(wsOverflowSummaryEvery - time.Second))
	if got := lines(); len(got) != 0 {
		t.Fatalf("summary before its period: %q", got)
	}
	o.summary(t0.Add(wsOverflowSummaryEvery))
	got = lines()
	if len(got) != 1 || !strings.Contains(got[0], `"overflows":4`) || !strings.Contains(got[0], `"overflows_total":4`) {
		t.Fatalf("summary: %q", got)
	}
	// A quiet period has no summary; the next one counts only its own.
	o.summary(t0.Add(2 * wsOverflowSummaryEvery))
	if got := lines(); len(got) != 0 {
		t.Fatalf("summary of a quiet period: %q", got)
	}
	o.closed("c-5", t0.Add(2*wsOverflowSummaryEvery+time.Second))
	lines()
	o.summary(t0.Add(3 * wsOverflowSummaryEvery))
	got = lines()
	if len(got) != 1 || !strings.Contains(got[0], `"overflows":1`) || !strings.Contains(got[0], `"overflows_total":5`) {
		t.Fatalf("third summary: %q", got)
	}
}

package xid

import (
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	seen := map[string]bool{}
	var prev ID
	for i := 0; i < 1000; i++ {
		id := New()
		s := id.String()
		if len(s) != 20 || strings.Trim(s, "0123456789abcdefghijklmnopqrstuv") != "" {
			t.Fatalf("%q: want 20 characters of lower-case base32hex", s)
		}
		if seen[s] {
			t.Fatalf("%q generated twice", s)
		}
		seen[s] = true
		// Within one second the counter orders them, unless it has just wrapped to 0.
		wrapped := id[9] == 0 && id[10] == 0 && id[11] == 0
		if i > 0 && id.Time().Equal(prev.Time()) && !wrapped && s <= prev.String() {
			t.Errorf("%q sorts before %q", s, prev.String())
		}
		prev = id
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if got := NewWithTime(at).Time(); !got.Equal(at) {
		t.Errorf("Time() = %v, want %v", got, at)
	}
}

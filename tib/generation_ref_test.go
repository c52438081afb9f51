package tib_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the far zone below, on machines without zone files

	"github.com/cauldron-dr/cauldron/tib"
)

func TestParseGenerationRef(t *testing.T) {
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		in   string
		want tib.GenerationRef
	}{
		{"latest", tib.GenerationRef{Kind: tib.GenerationLatest}},
		{"LATEST", tib.GenerationRef{Kind: tib.GenerationLatest}},
		{"3fA9", tib.GenerationRef{Kind: tib.GenerationID, ID: "3fa9"}},
		{"2026-11-21T03:00:00+01:00", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:00Z")}},
		{"2026-11-21 03:00:00+01:00", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:00Z")}},
		{"2026-11-21T02:00:00.5Z", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:00.5Z")}},
		{"2026-11-21T02:00", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:00Z")}},
		{"2026-11-21 02:00:30", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:30Z")}},
		{"2026-11-21T02:00:30.25", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T02:00:30.25Z")}},
		{"2026-11-21", tib.GenerationRef{Kind: tib.GenerationTime, Time: ts("2026-11-21T23:59:59.999999999Z")}},
	} {
		got, err := tib.ParseGenerationRef(c.in)
		if err != nil || got.Kind != c.want.Kind || got.ID != c.want.ID || !got.Time.Equal(c.want.Time) {
			t.Errorf("ParseGenerationRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		back, err := tib.ParseGenerationRef(got.String())
		if err != nil || back.Kind != got.Kind || back.ID != got.ID || !back.Time.Equal(got.Time) {
			t.Errorf("%q: String() %q reads back as %+v, %v", c.in, got.String(), back, err)
		}
	}
	for in, want := range map[string]string{
		"abc":        `want at least 4 hex digits of a generation ID, got "abc"`,
		"yesterday":  `want latest, a generation ID (at least 4 hex digits) or a time such as 2026-11-21T02:00:00Z, got "yesterday"`,
		"2026-13-01": `got "2026-13-01"`,
		"":           `got ""`,
	} {
		if _, err := tib.ParseGenerationRef(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseGenerationRef(%q): %v, want %q", in, err, want)
		}
	}
}

// TestParseGenerationRefNoZoneIsUTC: a time without a zone is UTC whatever zone the machine
// reading it is in (a kickstart written on a host means the same in the boot environment).
func TestParseGenerationRefNoZoneIsUTC(t *testing.T) {
	// UTC+14: any use of the local zone shows. $TZ is read once per process, so the zone it
	// would give is set directly (cmd/cauldron's tests run the binary with TZ set).
	loc, err := time.LoadLocation("Pacific/Kiritimati")
	if err != nil {
		t.Fatal(err)
	}
	saved := time.Local
	time.Local = loc
	defer func() { time.Local = saved }()
	for _, s := range []string{"2026-11-21T02:00", "2026-11-21 02:00:00", "2026-11-21T02:00:00"} {
		g, err := tib.ParseGenerationRef(s)
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC); !g.Time.Equal(want) {
			t.Errorf("%q = %s, want %s", s, g.Time, want)
		}
	}
	// Shown in the local zone with its offset, and read back as the same instant.
	at := time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)
	shown := tib.FormatTime(at)
	if shown != "2026-11-21T16:00:00+14:00" {
		t.Errorf("FormatTime in UTC+14 = %q", shown)
	}
	if g, err := tib.ParseGenerationRef(shown); err != nil || !g.Time.Equal(at) {
		t.Errorf("%q reads back as %v, %v", shown, g.Time, err)
	}
}

// TestFindGenerationByTime resolves times the kickstart accepts against real generations: the
// newest at or before the time, and an error naming the machine and the first generation's
// time (with its zone) when none is that old.
func TestFindGenerationByTime(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(src, content(newRand(1), 1<<20, false), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRepo(t, dir, "")
	var gens []*tib.Generation
	for i := 0; i < 3; i++ {
		gens = append(gens, capture(t, r, "web01", src))
		time.Sleep(20 * time.Millisecond)
	}
	capture(t, r, "db01", src)
	id := func(g *tib.Generation) string { return g.ID.String()[:12] }
	for _, c := range []struct {
		ref  string
		want *tib.Generation
	}{
		{gens[1].Time.Format(time.RFC3339Nano), gens[1]},
		{gens[1].Time.Add(-time.Nanosecond).Format(time.RFC3339Nano), gens[0]},
		{gens[2].Time.Add(time.Hour).In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano), gens[2]},
		// No zone: UTC.
		{gens[1].Time.UTC().Format("2006-01-02T15:04:05.999999999"), gens[1]},
		{gens[2].Time.UTC().Format("2006-01-02"), gens[2]},
		{"latest", gens[2]},
		{id(gens[0]), gens[0]},
	} {
		g, err := r.FindGeneration(ctx, "web01", c.ref)
		if err != nil {
			t.Errorf("FindGeneration(%q): %v", c.ref, err)
			continue
		}
		if g.ID != c.want.ID {
			t.Errorf("FindGeneration(%q) = %s, want %s", c.ref, id(g), id(c.want))
		}
	}
	_, err := r.FindGeneration(ctx, "web01", gens[0].Time.Add(-time.Second).Format(time.RFC3339))
	if !errors.Is(err, tib.ErrUnknownGeneration) || !strings.Contains(err.Error(), `machine "web01"`) ||
		!strings.Contains(err.Error(), "the first is from "+tib.FormatTime(gens[0].Time)) {
		t.Errorf("before the first generation: %v", err)
	}
	if _, err := r.FindGeneration(ctx, "web01", "yesterday"); err == nil || !strings.Contains(err.Error(), `got "yesterday"`) {
		t.Errorf("a bad reference: %v", err)
	}
}

func TestFormatTimeHasZone(t *testing.T) {
	zone := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$`)
	for _, tm := range []time.Time{time.Now(), time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 7, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))} {
		if s := tib.FormatTime(tm); !zone.MatchString(s) {
			t.Errorf("FormatTime(%v) = %q: no zone", tm, s)
		}
	}
}

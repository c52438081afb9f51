package tui

import (
	"regexp"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
)

// TestMachineScreensShowZones: the machine list, the timeline and a generation's details show
// times with their zone, exactly as the commands print them, so that a time copied from the
// wizard means the same in a kickstart (where a time without a zone is UTC).
func TestMachineScreensShowZones(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("", 5*3600+30*60) // not UTC: an offset must show
	defer func() { time.Local = saved }()
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	zoned := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30`)
	var web01 *tib.Generation
	for _, g := range d.m.gens {
		if g.Machine == "web01" && (web01 == nil || g.Time.After(web01.Time)) {
			web01 = g
		}
	}
	d.expectView(tib.FormatTime(web01.Time))
	if n := len(zoned.FindAllString(d.m.Render(), -1)); n != 2 {
		t.Errorf("the machine list shows %d times with their zone, want 2:\n%s", n, d.m.Render())
	}
	d.keys("j", "enter")
	d.expectScreen("Generation")
	// Two rows of the timeline and the details of the newest.
	if n := len(zoned.FindAllString(d.m.Render(), -1)); n != 3 {
		t.Errorf("the timeline shows %d times with their zone, want 3:\n%s", n, d.m.Render())
	}
}

package restore

import (
	"fmt"
	"io"
	"strings"

	"github.com/cauldron-dr/cauldron/tib"
)

// WriteText prints the report as the summary at the end of a recovery.
func (r *Report) WriteText(w io.Writer) {
	status := "succeeded"
	if !r.OK {
		status = "FAILED: " + r.Error
	}
	if r.LayoutOnly {
		fmt.Fprintf(w, "Partition tables (%s) %s\n", r.Name, status)
	} else {
		fmt.Fprintf(w, "Recovery of %s from generation %.12s (%s) %s\n", r.Machine, r.Generation, tib.FormatTime(r.GenerationTime), status)
	}
	if r.Runs > 1 {
		fmt.Fprintf(w, "  resumed: this was run %d of the same recovery\n", r.Runs)
	}
	fmt.Fprintf(w, "  %-10s %-8s %8s  %s\n", "stage", "status", "seconds", "")
	for _, s := range r.Stages {
		fmt.Fprintf(w, "  %-10s %-8s %8.1f  %s\n", s.Name, s.Status, s.Seconds, firstLine(s.Message))
	}
	var bytes int64
	var secs float64
	for _, d := range r.Disks {
		if r.LayoutOnly {
			if d.Table != nil {
				fmt.Fprintf(w, "  disk %s → %s: %s\n", d.Source, d.Target, d.Table)
			}
			continue
		}
		bytes += d.Bytes
		secs = max(secs, d.Seconds)
		fmt.Fprintf(w, "  disk %s → %s: %s restored", d.Source, d.Target, HumanBytes(d.Bytes))
		if d.Rate > 0 {
			fmt.Fprintf(w, " at %s/s", HumanBytes(int64(d.Rate)))
		}
		fmt.Fprintf(w, ", %s verified by hash\n", HumanBytes(d.Verified))
		for _, f := range d.Resized {
			fmt.Fprintf(w, "    %s partition %d (%s) to %s\n", f.Action, f.Partition, f.Type, HumanBytes(f.NewSize))
		}
		for _, c := range d.Checked {
			fmt.Fprintf(w, "    %s\n", c)
		}
		for _, dm := range d.Damaged {
			fmt.Fprintf(w, "    DAMAGED, left as zeros: %s\n", dm)
		}
	}
	if len(r.Disks) > 1 && secs > 0 {
		fmt.Fprintf(w, "  all disks: %s at %s/s\n", HumanBytes(bytes), HumanBytes(int64(float64(bytes)/secs)))
	}
	for _, c := range r.Inoculation {
		fmt.Fprintf(w, "  inoculation: %s\n", c)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	fmt.Fprintf(w, "  total %.1f s", r.Seconds)
	if r.ID != "" {
		fmt.Fprintf(w, "; report %.12s saved in %s", r.ID, r.Repository)
	}
	fmt.Fprintln(w)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

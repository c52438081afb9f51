package restore

import (
	"fmt"
	"time"
)

// Stage names, in the order Run goes through them.
const (
	StageFreeze    = "freeze"
	StageCheck     = "check"
	StageRestore   = "restore"
	StageVerify    = "verify"
	StageInoculate = "inoculate"
	StageFinalize  = "finalize"
	StageRelease   = "release"
	StageReport    = "report"
)

// Stages lists every stage in order.
var Stages = []string{StageFreeze, StageCheck, StageRestore, StageVerify, StageInoculate, StageFinalize, StageRelease, StageReport}

// EventKind says what an event reports.
type EventKind string

const (
	EventStart    EventKind = "start"
	EventProgress EventKind = "progress"
	EventInfo     EventKind = "info"
	EventDone     EventKind = "done"
	EventSkip     EventKind = "skip" // the stage has nothing to do, or was done before a resume
	EventError    EventKind = "error"
)

// Event is one thing that happened during a recovery. The command line prints them, the wizard
// draws them, and the log keeps them all: the engine itself prints nothing.
type Event struct {
	Time    time.Time     `json:"time"`
	Stage   string        `json:"stage"`
	Kind    EventKind     `json:"kind"`
	Disk    string        `json:"disk,omitempty"` // the source disk, for per-disk events
	Bytes   int64         `json:"bytes,omitempty"`
	Total   int64         `json:"total,omitempty"`
	Rate    float64       `json:"rate,omitempty"` // bytes per second since the stage started
	ETA     time.Duration `json:"eta,omitempty"`
	Message string        `json:"message,omitempty"`
}

// String renders an event as one log line.
func (e Event) String() string {
	s := fmt.Sprintf("%s %-9s %-8s", e.Time.Format("15:04:05"), e.Stage, e.Kind)
	if e.Disk != "" {
		s += " " + e.Disk
	}
	if e.Kind == EventProgress && e.Total > 0 {
		s += fmt.Sprintf(" %5.1f%% %s/%s", 100*float64(e.Bytes)/float64(e.Total), HumanBytes(e.Bytes), HumanBytes(e.Total))
		if e.Rate > 0 {
			s += fmt.Sprintf(" %s/s", HumanBytes(int64(e.Rate)))
		}
		if e.ETA > 0 {
			s += " ETA " + e.ETA.Round(time.Second).String()
		}
	}
	if e.Message != "" {
		s += " " + e.Message
	}
	return s
}

// HumanBytes formats a byte count in binary units ("1.5 GiB"), as every message of Cauldron does.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

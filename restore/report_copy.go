package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// restoredSystem is an operating system inoculation found on a restored disk: where the report
// and the log are copied, so that whoever runs the recovered machine can read what was done to it
// (/var/log/cauldron on Linux, \Windows\Cauldron on Windows).
type restoredSystem struct {
	disk      DiskPlan
	partition int
	fsType    string
	dir       string // inside the filesystem
}

// reportName is the file name (without extension) a report is copied under.
func reportName(rep *Report) string { return "recovery-" + rep.Started.Format("20060102T150405Z") }

// reportInto writes the report (JSON and text) into dir, creating it, and returns the JSON's path.
func reportInto(dir string, rep *Report, jsonText []byte) (string, error) {
	var text strings.Builder
	rep.WriteText(&text)
	base := filepath.Join(dir, reportName(rep))
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = atomicfile.Write(base+".json", jsonText, nil)
	}
	if err == nil {
		err = atomicfile.Write(base+".txt", []byte(text.String()), nil)
	}
	if err != nil {
		return "", fmt.Errorf("copying the report to %s: %w", dir, err)
	}
	return base + ".json", nil
}

// copyReport writes the report (JSON and text) into every restored system and returns where.
func copyReport(p *Plan, rep *Report, jsonText []byte) ([]string, error) {
	name := reportName(rep)
	var where []string
	for _, s := range p.systems {
		att, err := attachDisk(p, s.disk)
		if err != nil {
			return where, err
		}
		err = func() error {
			defer att.close()
			dev := att.partition(s.partition)
			if err := waitFor(dev, 5*time.Second); err != nil {
				return err
			}
			var root string
			var unmount func() error
			if s.fsType == "ntfs" {
				root, unmount, err = mountNTFS(dev)
				if err != nil {
					return err
				}
			} else {
				root, err = os.MkdirTemp("", "cauldron-report-")
				if err != nil {
					return err
				}
				if err := unix.Mount(dev, root, s.fsType, 0, ""); err != nil {
					os.Remove(root)
					return fmt.Errorf("mounting %s: %w", dev, err)
				}
				unmount = func() error { defer os.Remove(root); return unix.Unmount(root, 0) }
			}
			_, werr := reportInto(filepath.Join(root, s.dir), rep, jsonText)
			if uerr := unmount(); werr == nil {
				werr = uerr
			}
			if werr == nil {
				where = append(where, fmt.Sprintf("%s partition %d: /%s/%s.json", s.disk.Source, s.partition, s.dir, name))
			}
			return werr
		}()
		if err != nil {
			return where, fmt.Errorf("copying the report onto %s partition %d: %w", s.disk.Source, s.partition, err)
		}
	}
	return where, nil
}

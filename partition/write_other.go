//go:build !linux

package partition

import (
	"errors"
	"os"
	"time"
)

// Writing tables to block devices needs Linux (sysfs, BLKPG); image files are written elsewhere
// too but the safety checks are Linux-only, so Apply refuses there.
func devNumber(string) (string, error) {
	return "", errors.New("block devices are supported on Linux only")
}

func rereadPartitions(*os.File, os.FileInfo, string, *Disk, time.Duration) (string, []string, error) {
	return "", nil, errors.New("block devices are supported on Linux only")
}

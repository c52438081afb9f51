//go:build !linux

package partition

import (
	"errors"
	"os"
)

// blockGeometry needs Linux ioctls; Cauldron reads block devices on Linux only. Image files work
// everywhere.
func blockGeometry(*os.File) (geometry, error) {
	return geometry{}, errors.New("reading block devices is supported on Linux only")
}

func blockDeviceName(os.FileInfo, string) string { return "" }

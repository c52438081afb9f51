package boot

import (
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"
)

// MountUsr mounts UsrImage read-only on /usr through a loop device, loading the loop and
// squashfs drivers first (mods may be nil: then only built-in drivers are there), and reports
// whether it mounted it. Without the image (not Cauldron's boot environment) it does nothing.
func MountUsr(mods *Modules) (bool, error) {
	if _, err := os.Stat(UsrImage); err != nil {
		return false, nil
	}
	if mods != nil {
		for _, m := range []string{"loop", "squashfs"} {
			if err := mods.Load(m); err != nil {
				return false, fmt.Errorf("mounting %s on /usr: loading %s: %w", UsrImage, m, err)
			}
		}
	}
	l, err := loop.New(UsrImage, "squashfs", "")
	if err != nil {
		return false, fmt.Errorf("mounting %s on /usr: no loop device: %w", UsrImage, err)
	}
	if _, err := l.Mount("/usr", unix.MS_RDONLY|unix.MS_NODEV); err != nil {
		l.Free()
		return false, fmt.Errorf("mounting %s on /usr: %w", UsrImage, err)
	}
	return true, nil
}

//go:build !linux

package share

import (
	"context"
	"errors"
	"fmt"
)

// Mount needs Linux's nfs and cifs file systems; elsewhere it only checks the URL.
func Mount(ctx context.Context, rawURL, dir string, o Options) (string, error) {
	u, err := Parse(rawURL)
	if err != nil {
		return "", err
	}
	return "", fmt.Errorf("mounting %s: %w (shares are mounted by the Linux boot environment)", u, errors.ErrUnsupported)
}

// Unmount needs Linux.
func Unmount(dir string) error {
	return fmt.Errorf("unmounting %s: %w", dir, errors.ErrUnsupported)
}

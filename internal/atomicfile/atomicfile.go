// Package atomicfile replaces a file's content so that a crash leaves either the old content or
// the new, never a mix: the data goes to a temporary file in the same folder, is fsynced, renamed
// over the file, and the folder is fsynced. Hives, BCD stores, restored systems' configuration
// files and recovery journals are all written this way.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path's content with data. prepare, if not nil, is called on the temporary file
// before it is synced and renamed (to set its mode or owner); its error aborts the write. The
// new file's mode is 0644 unless prepare changes it.
func Write(path string, data []byte, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o644)
	if err != nil && os.IsPermission(err) {
		err = nil // FAT and some FUSE mounts refuse modes they cannot represent
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil && prepare != nil {
		err = prepare(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

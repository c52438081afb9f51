//go:build !linux

package tui

import (
	"errors"
	"os"
)

func windowSize(f *os.File) (int, int, error) {
	return 0, 0, errors.New("window size: not supported here")
}

func setWindowSize(f *os.File, w, h int) error { return errors.New("window size: not supported here") }

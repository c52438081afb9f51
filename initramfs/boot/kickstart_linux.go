package boot

import (
	"context"
	"fmt"
	"os"

	"github.com/cauldron-dr/cauldron/restore/kickstart"
)

// FetchKickstart reads the kickstart a cauldron.ks= location names: an http(s) URL (with
// retries: the network may still be coming up), cdrom:/PATH, usb:/PATH, or a path inside the
// image. It returns a name for messages (where it came from) and the data.
func FetchKickstart(ctx context.Context, loc string, mods *Modules, logf func(string, ...any)) (string, []byte, error) {
	l, err := kickstart.ParseLocation(loc)
	if err != nil {
		return loc, nil, fmt.Errorf("cauldron.ks=: %w", err)
	}
	switch l.Kind {
	case kickstart.LocationHTTP:
		data, err := kickstart.Fetch(ctx, l.URL, kickstart.FetchOptions{Log: logf})
		return l.URL, data, err
	case kickstart.LocationCDROM, kickstart.LocationUSB:
		data, dev, err := ReadFromMedia(string(l.Kind), l.Path, mods)
		if err != nil {
			return l.String(), nil, err
		}
		return dev + ":" + l.Path, data, nil
	default:
		data, err := os.ReadFile(l.Path)
		return l.Path, data, err
	}
}

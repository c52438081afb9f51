package boot

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// FetchKickstart reads the kickstart a cauldron.ks= location names: an http(s) URL, cdrom:/PATH,
// usb:/PATH, or a path inside the image. It returns a name for messages (the location) and the data.
func FetchKickstart(ctx context.Context, loc string, mods *Modules) (string, []byte, error) {
	switch {
	case isURL(loc):
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
		if err != nil {
			return loc, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return loc, nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return loc, nil, fmt.Errorf("%s: %s", loc, resp.Status)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
		if err == nil && len(data) > 1<<20 {
			err = fmt.Errorf("%s: larger than 1 MiB; not a kickstart", loc)
		}
		return loc, data, err
	case strings.HasPrefix(loc, "cdrom:"), strings.HasPrefix(loc, "usb:"):
		kind, path, _ := strings.Cut(loc, ":")
		data, dev, err := ReadFromMedia(kind, path, mods)
		if err != nil {
			return loc, nil, err
		}
		return dev + ":" + path, data, nil
	default:
		data, err := os.ReadFile(loc)
		return loc, data, err
	}
}

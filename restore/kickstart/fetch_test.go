package kickstart

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fastRetries keeps the tests quick: tiny waits between attempts.
var fastRetries = FetchOptions{Backoff: time.Millisecond, Attempts: 3, Timeout: 2 * time.Second}

func TestFetch(t *testing.T) {
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/web01.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(designExample))
	})
	flaky := 0
	mux.HandleFunc("/flaky.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if flaky++; flaky < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(designExample))
	})
	mux.HandleFunc("/big.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(strings.Repeat("#", 2000)))
	})
	mux.HandleFunc("/big-chunked.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		for i := 0; i < 40; i++ {
			w.Write([]byte(strings.Repeat("#", 100)))
			w.(http.Flusher).Flush() // no Content-Length: the limit must hold while reading
		}
	})
	mux.HandleFunc("/slow.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/forbidden.ks", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	})
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	defer srv.Close()
	ctx := context.Background()

	t.Run("ok", func(t *testing.T) {
		hits.Store(0)
		b, err := Fetch(ctx, srv.URL+"/web01.ks", fastRetries)
		if err != nil || string(b) != designExample || hits.Load() != 1 {
			t.Fatalf("%v, %d hits", err, hits.Load())
		}
		if _, err := Parse(srv.URL+"/web01.ks", strings.NewReader(string(b))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("retries a failing server", func(t *testing.T) {
		hits.Store(0)
		var logged []string
		opt := fastRetries
		opt.Log = func(format string, a ...any) { logged = append(logged, format) }
		b, err := Fetch(ctx, srv.URL+"/flaky.ks", opt)
		if err != nil || string(b) != designExample || hits.Load() != 3 || len(logged) != 2 {
			t.Fatalf("%v, %d hits, %d logged", err, hits.Load(), len(logged))
		}
	})
	t.Run("404 is not retried", func(t *testing.T) {
		hits.Store(0)
		_, err := Fetch(ctx, srv.URL+"/missing.ks", fastRetries)
		want := "fetching kickstart " + srv.URL + "/missing.ks: the server answered 404 Not Found: the server has no such file (check the path in cauldron.ks=)"
		if err == nil || err.Error() != want {
			t.Fatalf("got %v\nwant %s", err, want)
		}
	})
	t.Run("403 is not retried", func(t *testing.T) {
		hits.Store(0)
		_, err := Fetch(ctx, srv.URL+"/forbidden.ks", fastRetries)
		if err == nil || !strings.HasSuffix(err.Error(), "the server answered 403 Forbidden: the server refuses to hand it out") || hits.Load() != 1 {
			t.Fatalf("%v, %d hits", err, hits.Load())
		}
	})
	t.Run("size limit", func(t *testing.T) {
		for _, path := range []string{"/big.ks", "/big-chunked.ks"} {
			hits.Store(0)
			opt := fastRetries
			opt.MaxBytes = 1000
			_, err := Fetch(ctx, srv.URL+path, opt)
			if err == nil || !strings.HasSuffix(err.Error(), "larger than 1000 bytes: not a kickstart (is the URL right?)") || hits.Load() != 1 {
				t.Fatalf("%s: %v, %d hits", path, err, hits.Load())
			}
		}
	})
	t.Run("timeout, retried", func(t *testing.T) {
		hits.Store(0)
		opt := fastRetries
		opt.Timeout, opt.Attempts = 100*time.Millisecond, 2
		start := time.Now()
		_, err := Fetch(ctx, srv.URL+"/slow.ks", opt)
		if err == nil || !strings.HasSuffix(err.Error(), "no answer within 100ms") || hits.Load() != 2 {
			t.Fatalf("%v, %d hits", err, hits.Load())
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		opt := fastRetries
		opt.Attempts, opt.Backoff = 10, time.Hour
		_, err := Fetch(ctx, srv.URL+"/slow.ks", opt)
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestFetchConnectionRefused(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var attempts int
	opt := fastRetries
	opt.Log = func(string, ...any) { attempts++ }
	_, err = Fetch(context.Background(), "http://"+addr+"/web01.ks", opt)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.HasPrefix(err.Error(), "fetching kickstart http://"+addr+"/web01.ks: ") {
		t.Fatalf("got %v", err)
	}
	if attempts != opt.Attempts-1 {
		t.Errorf("%d retries logged, want %d", attempts, opt.Attempts-1)
	}
}

func TestFetchUntrustedCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	var hits int
	opt := fastRetries
	opt.Log = func(string, ...any) { hits++ }
	_, err := Fetch(context.Background(), srv.URL+"/web01.ks", opt)
	if err == nil || !strings.Contains(err.Error(), "the server's certificate is not trusted") || hits != 0 {
		t.Fatalf("got %v (%d retries)", err, hits)
	}
	// With the caller's client trusting the test server, it works.
	b, err := Fetch(context.Background(), srv.URL+"/web01.ks", FetchOptions{Client: srv.Client()})
	if err != nil || len(b) != 0 {
		t.Fatalf("%v %q", err, b)
	}
}

func TestFetchRefusesOtherLocations(t *testing.T) {
	for _, u := range []string{"cdrom:/web01.ks", "/web01.ks", "ftp://h/x"} {
		if _, err := Fetch(context.Background(), u, fastRetries); err == nil || !strings.HasPrefix(err.Error(), "fetching kickstart: ") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestParseLocation(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Location
		err  string
	}{
		{"http://10.0.0.5/ks/web01.ks", Location{Kind: LocationHTTP, URL: "http://10.0.0.5/ks/web01.ks"}, ""},
		{"HTTPS://dr.example:8443/web01.ks?x=1", Location{Kind: LocationHTTP, URL: "HTTPS://dr.example:8443/web01.ks?x=1"}, ""},
		{"cdrom:/web01.ks", Location{Kind: LocationCDROM, Path: "/web01.ks"}, ""},
		{"usb:/ks//web01.ks", Location{Kind: LocationUSB, Path: "/ks/web01.ks"}, ""},
		{"USB:/web01.ks", Location{Kind: LocationUSB, Path: "/web01.ks"}, ""},
		{"/etc/cauldron/web01.ks", Location{Kind: LocationPath, Path: "/etc/cauldron/web01.ks"}, ""},
		{"", Location{}, "empty location"},
		{"web01.ks", Location{}, `"web01.ks" is not an absolute path; want http(s)://…, cdrom:/PATH, usb:/PATH or an absolute path`},
		{"cdrom:web01.ks", Location{}, `"cdrom:web01.ks": want cdrom:/PATH, a path from the top of the medium`},
		{"nfs:server:/ks", Location{}, `"nfs:server:/ks": nfs is not supported; want http(s)://…, cdrom:/PATH, usb:/PATH or an absolute path`},
		{"s3://bucket/ks", Location{}, `"s3://bucket/ks": s3 locations cannot be used here; want http(s)://…, cdrom:/PATH, usb:/PATH or an absolute path`},
		{"http://", Location{}, `"http://" names no host`},
		{"http://h/%zz", Location{}, `"http://h/%zz" is not a valid URL: invalid URL escape "%zz"`},
	} {
		got, err := ParseLocation(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%q: error %v; want %s", c.in, err, c.err)
		}
		if err == nil && got.String() != strings.Replace(c.in, "//web01", "/web01", 1) && !strings.EqualFold(got.String(), c.in) {
			t.Errorf("%q: String() = %q", c.in, got.String())
		}
	}
}

package kickstart

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/restore/archive"
)

// FetchOptions tune Fetch; the zero value gives the defaults.
type FetchOptions struct {
	Client   *http.Client  // nil: a client of its own (proxy from the environment, system roots)
	Timeout  time.Duration // per attempt, headers and body; default 30 s
	MaxBytes int64         // default MaxSize
	Attempts int           // default 5
	Backoff  time.Duration // the wait after the first failed attempt, doubled after each; default 1 s, at most 15 s
	// Log, if set, hears about each failed attempt that will be retried (the boot console shows
	// it, so that a technician watching a slow network sees why nothing happens).
	Log func(format string, a ...any)
}

// Fetch downloads a kickstart from an http:// or https:// URL. It retries what may pass (no
// connection, a timeout, 5xx, 408 and 429 answers) with a growing wait, and stops at once on
// what will not (any other 4xx, a body over the size limit). Its errors name the URL and say
// what happened in words a technician can act on.
func Fetch(ctx context.Context, rawURL string, opt FetchOptions) ([]byte, error) {
	loc, err := archive.ParseLocation(rawURL, LocationHTTP)
	if err != nil {
		return nil, fmt.Errorf("fetching kickstart: %w", err)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = MaxSize
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 5
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	client := opt.Client
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	wait := opt.Backoff
	var last error
	for attempt := 1; ; attempt++ {
		body, retry, err := fetchOnce(ctx, client, loc.URL, opt)
		if err == nil {
			return body, nil
		}
		last = err
		if !retry || attempt >= opt.Attempts || ctx.Err() != nil {
			break
		}
		if opt.Log != nil {
			opt.Log("fetching kickstart %s: attempt %d of %d: %v; again in %v", loc.URL, attempt, opt.Attempts, err, wait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fetching kickstart %s: %w (stopped: %v)", loc.URL, last, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 15*time.Second)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("fetching kickstart %s: %w (stopped: %v)", loc.URL, last, ctx.Err())
	}
	return nil, fmt.Errorf("fetching kickstart %s: %w", loc.URL, last)
}

// statusError is an HTTP answer other than 200.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string {
	hint := ""
	switch {
	case e.code == http.StatusNotFound:
		hint = ": the server has no such file (check the path in cauldron.ks=)"
	case e.code == http.StatusUnauthorized || e.code == http.StatusForbidden:
		hint = ": the server refuses to hand it out"
	case e.code >= 500:
		hint = ": the server failed"
	}
	return "the server answered " + e.status + hint
}

// fetchOnce makes one attempt; retry says whether another might succeed.
func fetchOnce(ctx context.Context, client *http.Client, url string, opt FetchOptions) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		switch {
		case errors.As(err, &certErr):
			return nil, false, fmt.Errorf("the server's certificate is not trusted: %v", certErr.Err)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, true, fmt.Errorf("no answer within %v", opt.Timeout)
		}
		return nil, true, unwrapURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		status := resp.Status
		if status == "" {
			status = fmt.Sprint(resp.StatusCode)
		}
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
		return nil, retry, &statusError{code: resp.StatusCode, status: status}
	}
	tooBig := fmt.Errorf("larger than %d bytes: not a kickstart (is the URL right?)", opt.MaxBytes)
	if resp.ContentLength > opt.MaxBytes {
		return nil, false, tooBig
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, opt.MaxBytes+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline exceeded") {
			return nil, true, fmt.Errorf("the answer did not arrive within %v", opt.Timeout)
		}
		return nil, true, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(body)) > opt.MaxBytes {
		return nil, false, tooBig
	}
	return body, false, nil
}

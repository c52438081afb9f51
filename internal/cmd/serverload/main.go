// Command serverload puts the load of issue 16 on a `cauldron serve` and reports the server's
// memory under it (scripts/bench-net.sh): 100 slow uploads at once, 20 range requests at once for
// far more than the object holds (and 20 for all of it, which the server does send), and one
// 1 GiB upload. It is a benchmark tool, no part of cauldron.
//
//	serverload -url URL -pid PID -object data/NAME [-slow 100] [-slow-for 15s] [-ranges 20] [-big-mib 1024]
//	serverload -make-htpasswd FILE
//
// The phases run one after the other; while they run, the server's resident set (VmRSS of
// /proc/PID/status) is sampled every 20 ms. It prints one line per phase (key=value pairs: the
// answers the server gave and its peak RSS during the phase) and a last line with the
// kernel's high-water mark of the server's RSS (VmHWM) over its whole life. A login is taken from
// $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD when they are set.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/bcrypt"

	"github.com/cauldron-dr/cauldron/tib/crypto"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serverload:", err)
		os.Exit(1)
	}
}

type load struct {
	url, user, password string
	client              *http.Client
}

func run() error {
	url := flag.String("url", "", "the repository URL of the server (http://127.0.0.1:PORT/)")
	pid := flag.Int("pid", 0, "the server's process id, whose memory is sampled")
	object := flag.String("object", "", "an existing file of the repository for the range requests (data/NAME)")
	slow := flag.Int("slow", 100, "slow uploads at once")
	slowFor := flag.Duration("slow-for", 15*time.Second, "how long the slow uploads keep sending")
	ranges := flag.Int("ranges", 20, "oversized range requests at once")
	bigMiB := flag.Int64("big-mib", 1024, "size of the large upload in MiB")
	htpasswd := flag.String("make-htpasswd", "", "only write an htpasswd file (bcrypt) for $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD to this path, and exit")
	flag.Parse()
	if *htpasswd != "" {
		return makeHtpasswd(*htpasswd)
	}
	if *url == "" || *pid <= 0 || *object == "" || flag.NArg() > 0 {
		return errors.New("usage: serverload -url URL -pid PID -object data/NAME [-slow N] [-slow-for D] [-ranges N] [-big-mib N]")
	}
	l := &load{
		url:      strings.TrimSuffix(*url, "/") + "/",
		user:     os.Getenv("CAULDRON_HTTP_USER"),
		password: os.Getenv("CAULDRON_HTTP_PASSWORD"),
		// Each request on a connection of its own: the server sees as many clients as requests.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}},
	}
	if _, err := vm(*pid, "VmRSS"); err != nil {
		return err
	}
	// One request first, so that the server has checked the login once (it remembers it):
	// otherwise the 100 uploads' first bcrypt checks, all at once, take seconds of CPU on a small
	// machine and the phase measures logins, not uploads.
	if _, err := l.objectSize(*object); err != nil {
		return err
	}
	phases := []struct {
		name string
		run  func() (string, error)
	}{
		{"slow-uploads", func() (string, error) { return l.slowUploads(*slow, *slowFor) }},
		{"oversized-ranges", func() (string, error) { return l.oversizedRanges(*ranges, *object) }},
		{"whole-ranges", func() (string, error) { return l.wholeRanges(*ranges, *object) }},
		{"large-upload", func() (string, error) { return l.largeUpload(*bigMiB << 20) }},
	}
	for _, p := range phases {
		s := sample(*pid)
		res, err := p.run()
		peak := s.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Printf("phase=%s peak_rss_kib=%d %s\n", p.name, peak, res)
	}
	hwm, err := vm(*pid, "VmHWM")
	if err != nil {
		return err
	}
	fmt.Printf("phase=all vmhwm_kib=%d\n", hwm)
	return nil
}

// makeHtpasswd writes the login of the environment as the one user of an htpasswd file, for a
// server the benchmark starts (Debian's htpasswd is in apache2-utils, which nothing else needs).
func makeHtpasswd(path string) error {
	user, password := os.Getenv("CAULDRON_HTTP_USER"), os.Getenv("CAULDRON_HTTP_PASSWORD")
	if user == "" || password == "" {
		return errors.New("-make-htpasswd: set $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600)
}

// vm reads one field of /proc/PID/status in KiB.
func vm(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("the server's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

type sampler struct {
	done chan struct{}
	peak chan int64
}

func sample(pid int) sampler {
	s := sampler{make(chan struct{}), make(chan int64)}
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := vm(pid, "VmRSS"); err == nil && v > peak {
				peak = v
			}
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s sampler) stop() int64 { close(s.done); return <-s.peak }

func (l *load) request(ctx context.Context, method, rel string, body io.Reader, size int64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, l.url+rel, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	if l.user != "" {
		req.SetBasicAuth(l.user, l.password)
	}
	return req, nil
}

// statuses counts answers by status ("429:68 200:32"); "open" counts requests that had no
// answer when the phase ended them.
type statuses struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *statuses) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[k]++
}

func (s *statuses) String() string {
	var ks []string
	for k := range s.n {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k, s.n[k])
	}
	return b.String()
}

// trickle sends 1 KiB a second, for a file announced as 64 MiB, until ctx ends.
type trickle struct{ ctx context.Context }

func (t trickle) Read(p []byte) (int, error) {
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-time.After(time.Second):
	}
	n := min(len(p), 1024)
	for i := range p[:n] {
		p[i] = byte(i)
	}
	return n, nil
}

// slowUploads starts n uploads of packs announced as 64 MiB that send 1 KiB a second, keeps
// them going for d, then abandons them.
func (l *load) slowUploads(n int, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var st statuses
	var wg sync.WaitGroup
	for range n {
		name := make([]byte, 32)
		rand.Read(name)
		req, err := l.request(ctx, http.MethodPost, "data/"+hex.EncodeToString(name), trickle{ctx}, 64<<20)
		if err != nil {
			return "", err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := l.client.Do(req)
			if err != nil {
				st.add("open")
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			st.add(strconv.Itoa(resp.StatusCode))
		}()
	}
	wg.Wait()
	return fmt.Sprintf("requests=%d seconds=%.0f answers=%s", n, d.Seconds(), &st), nil
}

// oversizedRanges asks n times at once for 2 GiB of object, from its start, and reads the
// answers to the end.
func (l *load) oversizedRanges(n int, object string) (string, error) {
	return l.ranges(n, object, 2<<30)
}

// wholeRanges asks n times at once for the whole of object as a range, and reads the answers
// to the end: the memory of serving reads, where the oversized ones are refused.
func (l *load) wholeRanges(n int, object string) (string, error) {
	size, err := l.objectSize(object)
	if err != nil {
		return "", err
	}
	return l.ranges(n, object, size)
}

// objectSize asks the server for the size of object (HEAD).
func (l *load) objectSize(object string) (int64, error) {
	req, err := l.request(context.Background(), http.MethodHead, object, nil, 0)
	if err != nil {
		return 0, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		return 0, fmt.Errorf("HEAD %s: %s, length %d", object, resp.Status, resp.ContentLength)
	}
	return resp.ContentLength, nil
}

// ranges asks n times at once for bytes [0, size) of object and reads the answers to the end.
func (l *load) ranges(n int, object string, size int64) (string, error) {
	var st statuses
	var got atomic.Int64
	var wg sync.WaitGroup
	for range n {
		req, err := l.request(context.Background(), http.MethodGet, object, nil, 0)
		if err != nil {
			return "", err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", size-1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := l.client.Do(req)
			if err != nil {
				st.add("error")
				return
			}
			k, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got.Add(k)
			st.add(strconv.Itoa(resp.StatusCode))
		}()
	}
	wg.Wait()
	return fmt.Sprintf("requests=%d range_bytes=%d answers=%s received_bytes=%d", n, size, &st, got.Load()), nil
}

// largeUpload saves one pack of size bytes that the server's format checks accept: pseudo-random
// bytes under their own BLAKE3 name, ending in the length of an empty sealed header. The bytes
// are made twice (to name them, then to send them) rather than held.
func (l *load) largeUpload(size int64) (string, error) {
	seed := [32]byte{}
	rand.Read(seed[:])
	h := blake3.New()
	if _, err := io.Copy(h, packBytes(seed, size)); err != nil {
		return "", err
	}
	name := hex.EncodeToString(h.Sum(nil))
	req, err := l.request(context.Background(), http.MethodPost, "data/"+name, packBytes(seed, size), size)
	if err != nil {
		return "", err
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return "", err
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	res := fmt.Sprintf("bytes=%d answer=%d seconds=%.1f", size, resp.StatusCode, time.Since(start).Seconds())
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", res, strings.TrimSpace(string(text)))
	}
	return res + " stored=data/" + name, nil
}

// packBytes is size bytes from a ChaCha8 stream of seed, the last 4 of them the little-endian
// length of an empty sealed pack header.
func packBytes(seed [32]byte, size int64) io.Reader {
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crypto.Overhead)
	return io.MultiReader(io.LimitReader(chacha{mrand.NewChaCha8(seed)}, size-4), strings.NewReader(string(tail[:])))
}

type chacha struct{ c *mrand.ChaCha8 }

func (c chacha) Read(p []byte) (int, error) { return c.c.Read(p) }

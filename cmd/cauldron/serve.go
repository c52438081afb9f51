package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"github.com/spf13/cobra"
)

// defaultServeAddr keeps a server private to the machine unless the technician says otherwise.
const defaultServeAddr = "127.0.0.1:8420"

func newServe() *cobra.Command {
	var repo, listen, tlsCert, tlsKey, htpasswd string
	var appendOnly, readOnly, noAuth, insecureListen, private bool
	var maxUploads int
	var appendOnlyUsers, readOnlyUsers []string
	c := &cobra.Command{
		Use:   "serve --repo DIR [--listen ADDR] [--append-only | --read-only] [--htpasswd-file FILE [--private-repos] [--append-only-user U] [--read-only-user U] | --no-auth [--insecure-listen]] [--tls-cert FILE --tls-key FILE]",
		Short: "Offer a repository over HTTP(S) to captures and recoveries on other machines",
		Long: `Serve the repository in DIR over HTTP, or HTTPS with --tls-cert and --tls-key, until
interrupted. Other machines then use the printed URL as their repository (for example in a
kickstart's "repository" line). The server never needs the repository's password: encrypted
repositories stay encrypted on the wire and are decrypted only by the client.

Clients log in with HTTP basic authentication as users of an htpasswd file of bcrypt hashes
(--htpasswd-file, default DIR/.htpasswd; make one with "htpasswd -B -c FILE USER"; it is read
again when it changes, within a second, and on SIGHUP, so users are added and removed without a
restart; a changed file that cannot be read keeps the users as they were, and the log says why), as with restic's rest-server; they give the user name and password
in a --credentials-file (username= and password= lines) or in $CAULDRON_HTTP_USER and
$CAULDRON_HTTP_PASSWORD. With
--private-repos, DIR holds one repository per user, DIR/USER, which each user reaches at
/USER/ and no other. --append-only-user and --read-only-user give a user a stricter mode than
the server's. --no-auth serves without logins, and only on a loopback address unless
--insecure-listen is given too.

It listens on ` + defaultServeAddr + ` unless --listen says otherwise; when it is reachable from a
network, prefer --append-only (captures and recoveries work, nothing already stored can be
removed and no key can be added: a compromised client cannot destroy the archive) or --read-only
(nothing can be written; note that captures, restores and verifies take locks, so it suits
browsing and copying the archive). Every file a client saves is checked against the format
(its name, and for content-named files that its bytes hash to it); uploads are streamed to
DIR/tmp, at most --max-uploads at once (one more is answered 429 and retried by the client),
each at most 2 GiB (413), and a transfer that makes no progress for a minute is dropped; what
a killed server left in DIR/tmp is removed once an hour old (at start, then every half hour). The
protocol is specified in docs/archive-format.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := repoLocation(repo)
			if err != nil {
				return err
			}
			if l.Kind != archive.Path {
				return fmt.Errorf("--repo %s: serve offers a directory of this machine, not a %s location", l, l.Kind)
			}
			if private && noAuth {
				return errors.New("--private-repos gives each user of --htpasswd-file a repository; it cannot go with --no-auth")
			}
			if insecureListen && !noAuth {
				return errors.New("--insecure-listen allows --no-auth on a network address; it means nothing without --no-auth")
			}
			if noAuth && htpasswd != "" {
				return errors.New("--htpasswd-file and --no-auth contradict each other")
			}
			if private {
				// DIR holds the users' repositories, which they create (init) themselves.
				if fi, err := os.Stat(l.Path); err != nil || !fi.IsDir() {
					return fmt.Errorf("--repo %s: --private-repos needs a directory to hold the users' repositories", l.Shown())
				}
			} else if fi, err := os.Stat(filepath.Join(l.Path, "config")); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: %w: it has no config file (create one with `cauldron init --repo %s`)", l.Shown(), tib.ErrNoRepository, l)
			}
			if maxUploads < 1 {
				return fmt.Errorf("--max-uploads %d: at least 1", maxUploads)
			}
			errLog := log.New(cmd.ErrOrStderr(), "cauldron serve: ", log.LstdFlags)
			var htfile *rest.HtpasswdFile
			var users *rest.Users
			file := htpasswd
			if !noAuth {
				if file == "" {
					file = filepath.Join(l.Path, ".htpasswd")
				}
				htfile, err = rest.OpenHtpasswd(file, func(s string) { errLog.Print(s) })
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("--htpasswd-file %s does not exist: create it with `htpasswd -B -c %s USER`, or serve without logins with --no-auth (loopback only)", file, file)
				}
				if err != nil {
					return fmt.Errorf("--htpasswd-file: %w", err)
				}
				users = htfile.Users()
			}
			var tlsConf *tls.Config
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", tlsCert, tlsKey, err)
				}
				tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			if noAuth && !insecureListen && !isLoopback(ln.Addr()) {
				ln.Close()
				return fmt.Errorf("--listen %s: --no-auth serves only on a loopback address (anyone who reaches it could read the key files and, unless append-only, delete the archive); give an htpasswd file, or add --insecure-listen if the network is trusted", listen)
			}
			mode := "read-write"
			switch {
			case appendOnly:
				mode = "append-only"
			case readOnly:
				mode = "read-only"
			}
			userMode, err := serveUserModes(users, appendOnlyUsers, readOnlyUsers)
			if err != nil {
				return err
			}
			// One bound on uploads for the whole server, whatever repository or mode they go to.
			uploads := rest.NewUploadLimit(maxUploads)
			// optsFor is the server's mode, narrowed for a user given a stricter one.
			optsFor := func(user string) rest.HandlerOptions {
				o := rest.HandlerOptions{AppendOnly: appendOnly, ReadOnly: readOnly, CheckObjects: true,
					Uploads: uploads, ErrorLog: errLog}
				switch {
				case userMode[user] == "read-only":
					o.AppendOnly, o.ReadOnly = false, true
				case userMode[user] == "append-only" && !o.ReadOnly:
					o.AppendOnly = true
				}
				return o
			}
			var handler http.Handler
			if private {
				handler = rest.PrivateRepos(func(user string) http.Handler {
					return rest.NewHandler(local.New(filepath.Join(l.Path, user)), optsFor(user))
				})
			} else if len(userMode) > 0 {
				// One handler per mode over the one repository, chosen by the login that
				// RequireAuth has checked.
				be := local.New(l.Path)
				byMode := map[string]http.Handler{}
				for _, user := range append([]string{""}, slices.Collect(maps.Keys(userMode))...) {
					if byMode[userMode[user]] == nil {
						byMode[userMode[user]] = rest.NewHandler(be, optsFor(user))
					}
				}
				handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					user, _, _ := r.BasicAuth()
					byMode[userMode[user]].ServeHTTP(w, r)
				})
			} else {
				handler = rest.NewHandler(local.New(l.Path), optsFor(""))
			}
			if htfile != nil {
				handler = rest.RequireAuth(handler, rest.AuthOptions{Users: htfile, Private: private})
				// Listened for before the first request is served.
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				defer signal.Stop(hup)
				go reloadOnHangup(cmd.Context(), hup, htfile, errLog)
			}
			srv := &http.Server{
				Handler:   handler,
				TLSConfig: tlsConf,
				// Slow or silent clients must not hold connections for ever. The read and
				// write timeouts cover a request without a body and its answer; the handler
				// extends them while a file's bytes keep moving (a pack over a slow link), and
				// drops a transfer that makes no progress for rest.DefaultIOTimeout.
				ReadHeaderTimeout: 30 * time.Second,
				ReadTimeout:       rest.DefaultIOTimeout,
				WriteTimeout:      rest.DefaultIOTimeout,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          errLog,
			}
			scheme := "http"
			if tlsConf != nil {
				scheme = "https"
			}
			auth := "logins from " + file
			switch {
			case noAuth:
				auth = "no logins"
			case private:
				auth = "logins, a private repository per user at /USER/"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving %s (%s, %s) at %s\n", l, mode, auth, serveURL(scheme, ln.Addr()))
			if tlsConf == nil && !isLoopback(ln.Addr()) {
				fmt.Fprintln(cmd.ErrOrStderr(), "cauldron serve: note: without TLS, the repository's files cross the network in the clear (encrypted repositories stay encrypted)")
			}

			go cleanServedTemp(cmd.Context(), l.Path, private, errLog)
			served := make(chan error, 1)
			go func() {
				if tlsConf != nil {
					served <- srv.ServeTLS(ln, "", "")
				} else {
					served <- srv.Serve(ln)
				}
			}()
			select {
			case err := <-served:
				return err
			case <-cmd.Context().Done():
			}
			// Let requests in flight finish (a pack being saved), but not for ever.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
				return fmt.Errorf("stopping the server: %w", err)
			}
			if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&repo, "repo", os.Getenv("CAULDRON_REPOSITORY"), "repository directory; a relative one is taken from the working directory (also $CAULDRON_REPOSITORY)")
	c.Flags().StringVar(&listen, "listen", defaultServeAddr, "address to listen on, HOST:PORT (port 0: any free port)")
	c.Flags().BoolVar(&appendOnly, "append-only", false, "refuse removing anything but locks, sessions and journals, and adding key files to the repository")
	c.Flags().BoolVar(&readOnly, "read-only", false, "refuse every write")
	c.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	c.Flags().StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	c.Flags().StringVar(&htpasswd, "htpasswd-file", "", "users and their bcrypt hashes (htpasswd -B); default DIR/.htpasswd")
	c.Flags().BoolVar(&private, "private-repos", false, "DIR holds a repository per user: each user reaches only DIR/USER, at /USER/")
	c.Flags().BoolVar(&noAuth, "no-auth", false, "serve without logins (only on a loopback address unless --insecure-listen)")
	c.Flags().BoolVar(&insecureListen, "insecure-listen", false, "with --no-auth: allow a non-loopback --listen address")
	c.Flags().IntVar(&maxUploads, "max-uploads", rest.DefaultMaxUploads, "files received at once by the whole server (every repository and user); one more is answered 429 (the client retries)")
	c.Flags().StringSliceVar(&appendOnlyUsers, "append-only-user", nil, "this user of --htpasswd-file gets append-only access (repeat, or separate with commas)")
	c.Flags().StringSliceVar(&readOnlyUsers, "read-only-user", nil, "this user of --htpasswd-file gets read-only access (repeat, or separate with commas)")
	c.MarkFlagsMutuallyExclusive("append-only", "read-only")
	c.MarkFlagsRequiredTogether("tls-cert", "tls-key")
	return c
}

// reloadOnHangup reads the htpasswd file again on every SIGHUP until ctx ends (it is also read
// again when it changes).
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, f *rest.HtpasswdFile, errLog *log.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := f.Reload(); err == nil {
				errLog.Printf("SIGHUP: htpasswd file reloaded")
			}
		}
	}
}

// cleanServedTemp removes, when serve starts and then every half TempAge until ctx ends, what
// uploads cut off by a killed server left in the served repositories' tmp/ (each user's with
// private repositories), once older than backend.TempAge.
func cleanServedTemp(ctx context.Context, root string, private bool, errLog *log.Logger) {
	for {
		dirs := []string{root}
		if private {
			dirs = nil
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if e.IsDir() {
					dirs = append(dirs, filepath.Join(root, e.Name()))
				}
			}
		}
		for _, d := range dirs {
			n, err := local.New(d).CleanTemp(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				errLog.Printf("clearing %s/tmp: %v", d, err)
			case n > 0:
				errLog.Printf("removed %d file(s) that interrupted uploads left in %s/tmp", n, d)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backend.TempAge / 2):
		}
	}
}

// serveUserModes maps the users given a stricter mode than the server's to that mode, checking
// that each is a user of the htpasswd file and is given one mode.
func serveUserModes(users *rest.Users, appendOnly, readOnly []string) (map[string]string, error) {
	modes := map[string]string{}
	for _, l := range []struct {
		flag, mode string
		names      []string
	}{{"--append-only-user", "append-only", appendOnly}, {"--read-only-user", "read-only", readOnly}} {
		for _, u := range l.names {
			switch {
			case users == nil:
				return nil, fmt.Errorf("%s %s: modes per user need logins; they cannot go with --no-auth", l.flag, u)
			case !users.Has(u):
				return nil, fmt.Errorf("%s %s: no such user in the htpasswd file", l.flag, u)
			case modes[u] != "" && modes[u] != l.mode:
				return nil, fmt.Errorf("%s %s: the user is also given %s", l.flag, u, modes[u])
			}
			modes[u] = l.mode
		}
	}
	return modes, nil
}

// serveURL is the URL clients use for addr: an address that listens on every interface is
// named by the host's name, which the clients are likelier to reach than 0.0.0.0.
func serveURL(scheme string, addr net.Addr) string {
	host, port := addr.String(), ""
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
		host = ta.IP.String()
		if ta.IP.IsUnspecified() {
			if h, err := os.Hostname(); err == nil && h != "" {
				host = h
			}
		}
		return scheme + "://" + net.JoinHostPort(host, port) + "/"
	}
	return scheme + "://" + host + "/"
}

func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

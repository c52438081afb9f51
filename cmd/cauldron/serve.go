package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"github.com/spf13/cobra"
)

// defaultServeAddr keeps a server private to the machine unless the technician says otherwise.
const defaultServeAddr = "127.0.0.1:8420"

func newServe() *cobra.Command {
	var repo, listen, tlsCert, tlsKey string
	var appendOnly, readOnly bool
	c := &cobra.Command{
		Use:   "serve --repo DIR [--listen ADDR] [--append-only | --read-only] [--tls-cert FILE --tls-key FILE]",
		Short: "Offer a repository over HTTP(S) to captures and recoveries on other machines",
		Long: `Serve the repository in DIR over HTTP, or HTTPS with --tls-cert and --tls-key, until
interrupted. Other machines then use the printed URL as their repository (for example in a
kickstart's "repository" line). The server never needs the repository's password: encrypted
repositories stay encrypted on the wire and are decrypted only by the client.

The protocol has no logins. It listens on ` + defaultServeAddr + ` unless --listen says otherwise;
when it is reachable from a network, prefer --append-only (captures and recoveries work, nothing
already stored can be removed: a compromised client cannot destroy the archive) or --read-only
(nothing can be written; note that captures, restores and verifies take locks, so it suits
browsing and copying the archive). The protocol is specified in docs/archive-format.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := repoLocation(repo)
			if err != nil {
				return err
			}
			if l.Kind != archive.Path {
				return fmt.Errorf("--repo %s: serve offers a directory of this machine, not a %s location", l, l.Kind)
			}
			if fi, err := os.Stat(filepath.Join(l.Path, "config")); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: %w: it has no config file (create one with `cauldron init --repo %s`)", l.Shown(), tib.ErrNoRepository, l)
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
			errLog := log.New(cmd.ErrOrStderr(), "cauldron serve: ", log.LstdFlags)
			mode := "read-write"
			switch {
			case appendOnly:
				mode = "append-only"
			case readOnly:
				mode = "read-only"
			}
			srv := &http.Server{
				Handler: rest.NewHandler(local.New(l.Path), rest.HandlerOptions{
					AppendOnly: appendOnly, ReadOnly: readOnly, ErrorLog: errLog}),
				TLSConfig: tlsConf,
				// Slow or silent clients must not hold connections for ever; bodies (packs of
				// many MiB over a slow link) get no overall limit, only the idle one.
				ReadHeaderTimeout: 30 * time.Second,
				IdleTimeout:       2 * time.Minute,
				ErrorLog:          errLog,
			}
			scheme := "http"
			if tlsConf != nil {
				scheme = "https"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving %s (%s) at %s\n", l, mode, serveURL(scheme, ln.Addr()))
			if tlsConf == nil && !isLoopback(ln.Addr()) {
				fmt.Fprintln(cmd.ErrOrStderr(), "cauldron serve: note: without TLS, the repository's files cross the network in the clear (encrypted repositories stay encrypted)")
			}

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
	c.Flags().BoolVar(&appendOnly, "append-only", false, "refuse removing anything but locks, sessions and journals")
	c.Flags().BoolVar(&readOnly, "read-only", false, "refuse every write")
	c.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	c.Flags().StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	c.MarkFlagsMutuallyExclusive("append-only", "read-only")
	c.MarkFlagsRequiredTogether("tls-cert", "tls-key")
	return c
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

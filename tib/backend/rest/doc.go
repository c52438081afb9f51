// Package rest carries a repository's files over HTTP and HTTPS: a client that implements
// backend.Backend against a URL, and a server (an http.Handler) that offers any backend.Backend
// at a URL. A technician's recovery environment reads the archive through the client; `cauldron
// serve` runs the server in front of a repository directory, and the same handler can front any
// other backend (S3, for instance) because it only speaks the backend interface.
//
// # Why it is hand-written
//
// No maintained Go library speaks an HTTP protocol for a repository of our file types (config,
// keys, data, index, generations, locks, sessions, journals, reports) with our rules (immutable
// content-named files, a few replaceable types, ErrExist and ErrNotExist that callers test with
// errors.Is). restic's REST server protocol was the model for the idea — one URL path per file,
// a JSON listing per type, ranged GETs — but its server refuses our types and its rules differ,
// so this package defines its own small protocol; none of restic's code is used.
//
// # Protocol
//
// Paths are relative to the repository URL (which may have a path of its own, always treated as
// a folder). TYPE is one of keys, data, index, generations, locks, sessions, journals, reports;
// NAME is 1–255 characters from [A-Za-z0-9._-], not starting with a dot. docs/archive-format.md
// ("HTTP protocol") is the exact specification; in short:
//
//	POST   /?create=true   create the repository's structure; 409 if a config exists
//	GET    /config          the config file; HEAD: its size in Content-Length
//	POST   /config          save the config (409 if it exists); DELETE removes it
//	GET    /TYPE/NAME       the file, or one byte range of it (Range: bytes=A-B or bytes=A-)
//	HEAD   /TYPE/NAME       its size in Content-Length
//	POST   /TYPE/NAME       save it; the body is the whole file, with a Content-Length
//	DELETE /TYPE/NAME       remove it
//	GET    /TYPE/           JSON array of {"name": NAME, "size": BYTES}
//
// Success is 200 (206 for a range). 404 means the file does not exist (backend.ErrNotExist on
// the client), 409 that it exists already and is not replaceable (backend.ErrExist), 416 that a
// range reaches past the end, 400 a bad path, name or request (or, with CheckObjects, a file
// that cannot be what its path says), 401 a missing or wrong login, 403 a write the server's
// mode refuses, 413 a file above the server's limit, 429 that the server receives as many files
// as it takes (nothing was done; Retry-After), 5xx a failure of the server or its storage. Every error answer has a short plain-text
// body, which the client quotes in its error.
//
// # Server modes
//
// An append-only server lets a client do everything a capture and a recovery need — save new
// files, replace and remove locks, sessions and journals, create a repository where none is —
// and refuses (403) removing any other file, and adding a key file once a config exists. Replacing an immutable file is refused by the
// backend itself (409). So a machine that is compromised, and holds the only credentials to
// reach the archive, can add generations but cannot destroy the ones already stored; prune and
// forget run elsewhere, against the directory itself. Sessions and journals may be removed as
// well as replaced because a client that may replace them can empty them anyway, and a recovery
// needs to (a finished recovery removes its journal, a production failover removes the
// machine's replication session). A read-only server refuses every write with 403; since
// captures, restores and verifies take locks, it suits listing and reading the archive, not
// running those commands.
//
// # Authentication and resources
//
// RequireAuth puts HTTP basic authentication against an htpasswd file of bcrypt hashes (Users,
// or HtpasswdFile, which reads the file again when it changes) in front of a handler, as
// restic's rest-server does, and PrivateRepos gives each user a repository of their own under
// /USER/. Clients send the login from Options; credentials in the
// URL are refused, so that they never end up in kickstart files or logs.
//
// The handler holds no file in memory: a range is checked against the file's size first and
// sent as it is read, and an upload is streamed through its checks into a StreamSaver (the local
// backend's tmp/), bounded in number (MaxUploads), size (MaxFileSize) and stalls (IOTimeout).
//
// # Flaky networks
//
// A recovery often runs over a poor link. The client retries, with exponential backoff and a
// bound, every request that is safe to repeat: GET, HEAD, listing, and saves of the write-once
// types (everything except locks, sessions and journals). A write-once save that is retried and
// then finds the file present (409) reads the file back and succeeds only if it holds exactly
// the bytes being saved: the earlier attempt stored it and only its answer was lost. Creating a
// repository, replacing a lock, session or journal, and removing a file are repeated only when
// the first attempt never reached a server (no connection could be made); any other failure of
// theirs is reported, because repeating them could undo another writer's change. Connection
// errors, 5xx answers and 429 count as transient (a 429 says the server did nothing, so after
// one any request is repeated); a request that makes no progress for the
// Timeout is abandoned and counts as a connection error. Certificate errors are never retried.
package rest

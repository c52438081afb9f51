// Package kickstart reads Cauldron's kickstart files: the unattended recipe for a recovery (which
// repository, machine and generation, which disks go where, how to inoculate, what to do at the
// end, and the technician's consent to overwrite the targets). docs/kickstart.md is the reference
// for the format; this package is its parser and the checks that need no repository.
//
// The syntax follows anaconda's kickstart, which technicians know: one command per line, `#`
// comments, `--option value` and `--option=value`, boolean `--flag`s, positional arguments,
// shell-like quoting and a trailing backslash to continue a line. Parse returns a typed, plain
// Kickstart (every default filled in, every command's position kept so that the recovery engine
// can say "web01.ks:2: machine "web01" not in repository"), or an *ErrorList holding every
// problem found, sorted by position, each with FILE:LINE:COLUMN and what was expected.
//
// The lexer is written by hand rather than taken from a shell-words library. The two in the module
// graph do not fit: github.com/hugelgupf/go-shlex returns bare strings (no positions, no error for
// an unterminated quote), and mvdan.cc/sh/v3 parses the whole POSIX shell language, so `$x`,
// `;`, `|`, `>` and backticks would silently mean something in a file that must mean exactly
// what it says. The lexer here knows only what the format needs, and keeps the line and column of
// every character so that an error can point inside a quoted value or a comma-separated list.
//
// What this package deliberately does not do: open the repository, look for the machine, its
// generation or its disks, or look at the target machine's disks. Those checks belong to the
// recovery engine, which turns a Kickstart into a plan. ParseLocation reads the `cauldron.ks=`
// forms from the kernel command line and Fetch downloads a kickstart over HTTP(S); mounting a CD
// or a USB disk is the boot program's job.
package kickstart

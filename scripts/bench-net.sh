#!/usr/bin/env bash
# Network restores and server memory (issue 16), run by scripts/bench.sh after its own sections;
# usable on its own (as root):
#   restore   one generation of the ext4 source disk (scripts/bench-images.sh) restored with
#             cauldron restore-disk from the local repository folder, and from the same folder
#             through `cauldron serve` over HTTP and HTTPS (with a login) and through an S3
#             server (versitygw, internal/cmd/s3gateway, holding a copy of the same files), all on
#             127.0.0.1; the tools take turns in each round, caches dropped before each run;
#             every kind's first restore is compared with the source (cmp).
#   server    the peak resident memory of `cauldron serve` (default limits) under 100 slow
#             uploads, 20 range requests for 2 GiB of a pack, and one 1 GiB upload
#             (internal/cmd/serverload).
# It replaces its own section of BENCH_DOC (between the bench-net markers) or appends it.
# Settings: BENCH_VOL_MIB (2048), BENCH_RUNS (3), BENCH_CACHE (/var/tmp/cauldron-bench),
# BENCH_DOC (docs/benchmarks.md), BENCH_SLOW_FOR (15 s of slow uploads), BENCH_BIG_MIB (1024),
# BENCH_LOAD_NOTE (words on the machine's load, for the report).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/bin/cauldron}
VOL_MIB=${BENCH_VOL_MIB:-2048}
RUNS=${BENCH_RUNS:-3}
CACHE=${BENCH_CACHE:-/var/tmp/cauldron-bench}
DOC=${BENCH_DOC:-${DOC:-$ROOT/docs/benchmarks.md}}
SLOW_FOR=${BENCH_SLOW_FOR:-15}
BIG_MIB=${BENCH_BIG_MIB:-1024}
# The source disks' cache version is bench.sh's (one place to change it).
DATA_VERSION=$(sed -n 's/^DATA_VERSION=\([0-9][0-9]*\).*/\1/p' "$ROOT/scripts/bench.sh")
[ -n "$DATA_VERSION" ] || { echo "bench-net: no DATA_VERSION in scripts/bench.sh" >&2; exit 1; }
IMAGES=$CACHE/v$DATA_VERSION-${VOL_MIB}M
GOAL=0.90 # network rate over local rate
RSS_GOAL_MIB=256
GIT_DESCRIBE=$(git describe --always --dirty 2>/dev/null || echo unknown)
T_START=$EPOCHREALTIME

[ "$(id -u)" = 0 ] || { echo "bench-net: run as root (loop devices, drop_caches)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench-net: $BIN missing; run make build" >&2; exit 1; }
for t in go openssl cmp losetup /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench-net: $t missing" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/cauldron-bench-net.XXXXXX)
cp "$BIN" "$WORK/cauldron"
BIN=$WORK/cauldron
LOOPS=()
PIDS=()
cleanup() {
	local p l
	for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	for l in ${LOOPS[@]+"${LOOPS[@]}"}; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# shellcheck source=loops.sh
. "$ROOT/scripts/loops.sh"
say() { printf '== %s\n' "$*"; }
die() { echo "bench-net: $*" >&2; exit 1; }

say "building the load tools (internal/cmd/s3gateway, internal/cmd/serverload)"
CGO_ENABLED=0 go build -o "$WORK/s3gateway" ./internal/cmd/s3gateway
CGO_ENABLED=0 go build -o "$WORK/serverload" ./internal/cmd/serverload

if [ ! -f "$IMAGES/complete" ]; then
	say "building the source disks into $IMAGES (once)"
	mkdir -p "$CACHE"
	"$ROOT/scripts/bench-images.sh" "$IMAGES" "$VOL_MIB"
fi
# shellcheck source=/dev/null
. "$IMAGES/info.env"
IMG=$IMAGES/ext4-1.img

# --- servers: each started in the background, its first line of output read for its URL -------
export CAULDRON_HTTP_USER=bench CAULDRON_HTTP_PASSWORD=bench-login-not-secret
export AWS_ACCESS_KEY_ID=cauldron-bench AWS_SECRET_ACCESS_KEY=cauldron-bench-secret-not-secret
# start_server VAR-URL VAR-PID LOG CMD...: runs CMD, waits for "serving ... at URL" or
# "listening URL" in LOG.
start_server() {
	local _u=$1 _p=$2 log=$3 i url=
	shift 3
	"$@" >"$log" 2>&1 &
	PIDS+=($!)
	printf -v "$_p" %s $!
	for i in $(seq 1 600); do
		url=$(awk '/^serving .* at / { print $NF; exit } /^listening / { print $2; exit }' "$log")
		[ -n "$url" ] && break
		kill -0 "${!_p}" 2>/dev/null || { cat "$log" >&2; die "$1 stopped"; }
		sleep 0.1
	done
	[ -n "$url" ] || { cat "$log" >&2; die "$* did not start"; }
	printf -v "$_u" %s "$url"
}
stop_server() { # PID
	local keep=() p
	kill "$1" && wait "$1" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=(${keep[@]+"${keep[@]}"})
}
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # PID: user + system clock ticks

say "capturing the ext4 disk into a local repository"
loop_attach DISK -r "$IMG"
REPO=$WORK/repo
"$BIN" init --repo "$REPO" --no-password >/dev/null
"$BIN" capture --repo "$REPO" --machine ext4 "$DISK" >"$WORK/capture.log" 2>&1 || { cat "$WORK/capture.log" >&2; die "capture failed"; }
loop_detach "$DISK"
USED=$("$BIN" generations --repo "$REPO" --machine ext4 --json | jq -r '.[0].stats.usedBytes')
PACKS=$(find "$REPO/data" -type f | wc -l)
PACK_BYTES=$(du -sb "$REPO/data" | cut -f1)

say "starting the servers on 127.0.0.1"
"$WORK/serverload" -make-htpasswd "$WORK/htpasswd"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
start_server HTTP_URL HTTP_PID "$WORK/serve-http.log" "$BIN" serve --repo "$REPO" --listen 127.0.0.1:0 --append-only --htpasswd-file "$WORK/htpasswd"
start_server HTTPS_URL HTTPS_PID "$WORK/serve-https.log" "$BIN" serve --repo "$REPO" --listen 127.0.0.1:0 --append-only --htpasswd-file "$WORK/htpasswd" --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key"
start_server S3_URL S3_PID "$WORK/s3.log" "$WORK/s3gateway" -dir "$WORK/s3" -bucket bench -seed "$REPO"
echo "   $HTTP_URL $HTTPS_URL $S3_URL"

# --- restores -----------------------------------------------------------------------------------
declare -A T C RSS SCPU
KINDS=(local http https s3)
declare -A LABEL=(
	[local]="local folder (\`--repo DIR\`)"
	[http]="\`cauldron serve\`, HTTP, with a login"
	[https]="\`cauldron serve\`, HTTPS (self-signed, \`--insecure-tls\`), with a login"
	[s3]="S3: versitygw over a folder (\`--repo s3://bench --endpoint\`)"
)
declare -A ARGS=(
	[local]="--repo $REPO"
	[http]="--repo $HTTP_URL"
	[https]="--repo $HTTPS_URL --insecure-tls"
	[s3]="--repo s3://bench --endpoint $S3_URL"
)
declare -A SERVER=([local]= [http]=$HTTP_PID [https]=$HTTPS_PID [s3]=$S3_PID)
declare -A INPUT=([local]=$REPO [http]=$REPO [https]=$REPO [s3]=$WORK/s3)
CHECKS=()
CHECK_FAILED=0
OUT=$WORK/restored.img
cpu_user() { awk '/^cpu / { print $2 + $3 + $4 }' /proc/stat; } # the machine's user+nice+system ticks
declare -A BUSY
restore_once() { # kind round
	local k=$1 a b s0=0 s1=0 m0 m1 pid=${SERVER[$1]}
	rm -f "$OUT"
	# As bench.sh: the input read once (the virtual disk's host cache warm), then this
	# machine's page cache dropped.
	find "${INPUT[$k]}" -type f -exec cat {} + >/dev/null
	sync
	echo 3 >/proc/sys/vm/drop_caches
	[ -z "$pid" ] || s0=$(cpu_of "$pid")
	m0=$(cpu_user)
	a=$EPOCHREALTIME
	# shellcheck disable=SC2086
	/usr/bin/time -v -o "$WORK/time.txt" "$BIN" restore-disk --no-verify ${ARGS[$k]} --machine ext4 --generation latest --disk disk0 --to "$OUT" >"$WORK/restore.log" 2>&1 ||
		{ cat "$WORK/restore.log" >&2; die "restore from $k failed"; }
	b=$EPOCHREALTIME
	m1=$(cpu_user)
	[ -z "$pid" ] || s1=$(cpu_of "$pid")
	T[$k]+="$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }') "
	C[$k]+="$(awk -F': ' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$WORK/time.txt") "
	SCPU[$k]+="$(awk -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }') "
	# CPUs busy on the whole machine during the run (ours included): with 2 CPUs, above ~1.5
	# means the restore competed with other work.
	BUSY[$k]+="$(awk -v a="$m0" -v b="$m1" -v hz="$(getconf CLK_TCK)" -v t0="$a" -v t1="$b" 'BEGIN { printf "%.2f", (b - a) / hz / (t1 - t0) }') "
	local r
	r=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
	[ "$r" -gt "${RSS[$k]:-0}" ] && RSS[$k]=$r
	if [ "$2" = 1 ]; then
		if cmp "$IMG" "$OUT" >"$WORK/cmp.log" 2>&1; then
			CHECKS+=("${LABEL[$k]}: whole disk byte-identical to the source (cmp): clean")
		else
			CHECKS+=("${LABEL[$k]}: whole disk byte-identical to the source (cmp): **FAILED** ($(head -c 200 "$WORK/cmp.log"))")
			CHECK_FAILED=1
		fi
	fi
	rm -f "$OUT"
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq 1 "$RUNS"); do
	say "restores, round $i of $RUNS: ${KINDS[*]}"
	for k in "${KINDS[@]}"; do restore_once "$k" "$i"; done
	echo "   $(for k in "${KINDS[@]}"; do printf '%s %ss  ' "$k" "$(echo "${T[$k]}" | awk '{ print $NF }')"; done)"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
stop_server "$HTTP_PID"
stop_server "$HTTPS_PID"
stop_server "$S3_PID"

# --- server memory ------------------------------------------------------------------------------
say "server memory: ${SLOW_FOR} s of 100 slow uploads, 20 ranges of 2 GiB, one ${BIG_MIB} MiB upload"
# A copy of the repository (hard links; nothing in it is changed in place) takes the uploads.
cp -al "$REPO" "$WORK/repo-load"
PACK=$(find "$WORK/repo-load/data" -type f -printf '%s %f\n' | sort -n | tail -n 1 | cut -d' ' -f2)
PACK_SIZE=$(stat -c %s "$(find "$WORK/repo-load/data" -name "$PACK")")
start_server LOAD_URL LOAD_PID "$WORK/serve-load.log" "$BIN" serve --repo "$WORK/repo-load" --listen 127.0.0.1:0 --htpasswd-file "$WORK/htpasswd"
"$WORK/serverload" -url "$LOAD_URL" -pid "$LOAD_PID" -object "data/$PACK" -slow-for "${SLOW_FOR}s" -big-mib "$BIG_MIB" | tee "$WORK/load.txt" ||
	{ cat "$WORK/serve-load.log" >&2; die "the server load failed"; }
stop_server "$LOAD_PID"
field() { awk -v p="phase=$1" -v f="$2" '$1 == p { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$WORK/load.txt"; }
HWM=$(field all vmhwm_kib)

# --- the report ---------------------------------------------------------------------------------
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { echo "$1" | median; }
runs() { echo "$1" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.2f", (i > 1 ? ", " : ""), $i }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
row() { # kind
	local k=$1 m ratio verdict
	m=$(med "${T[$k]}")
	ratio=$(awk -v l="$(med "${T[local]}")" -v m="$m" 'BEGIN { printf "%.2f", l / m }')
	verdict=–
	[ "$k" = local ] || verdict=$(awk -v r="$ratio" -v g="$GOAL" 'BEGIN { print (r >= g ? "met" : "**NOT met**") }')
	printf '| %s | %.2f | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$k]}" "$m" "$(awk -v b="$USED" -v s="$m" 'BEGIN { print b / s / 1e6 }')" \
		"$(med "${C[$k]}")" "$([ "$k" = local ] && echo – || med "${SCPU[$k]}")" "$(runs "${T[$k]}")" "$(runs "${BUSY[$k]}")" "$(mib "${RSS[$k]}")" "$ratio ×" "$verdict"
}
status="All correctness checks passed."
[ "$CHECK_FAILED" = 0 ] || status="**NUMBERS VOID: a restore was not identical to its source.**"
rss_verdict=$(awk -v k="$HWM" -v g="$RSS_GOAL_MIB" 'BEGIN { print (k / 1024 < g ? "met" : "**NOT met**") }')
params=""
[ "$VOL_MIB" = 2048 ] && [ "$RUNS" = 3 ] && [ "$BIG_MIB" = 1024 ] || params=" (with BENCH_VOL_MIB=$VOL_MIB BENCH_RUNS=$RUNS BENCH_BIG_MIB=$BIG_MIB: not the standard sizes)"
section() {
	cat <<EOF
<!-- bench-net: written by scripts/bench-net.sh; the rest of this file is not its business -->
## Network restore and server memory

Produced by \`scripts/bench-net.sh\`$params (run by \`make bench\`), $(date -u '+%Y-%m-%d %H:%M UTC'),
\`git describe\` $GIT_DESCRIBE, in $(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }'). $status
${BENCH_LOAD_NOTE:+
**Load:** $BENCH_LOAD_NOTE
}
### Restore over the network (goal: ≥ $GOAL × the local rate)

One generation: the ext4 source disk of \`scripts/bench-images.sh\` ($((DISK_SIZE >> 20)) MiB, $FILES files of $((FILE_BYTES >> 20)) MiB;
${USED} bytes used, stored unencrypted in $PACKS packs of $((PACK_BYTES >> 20)) MiB in all), restored with \`cauldron restore-disk --no-verify\` to a
new image file (fsynced) from the repository folder itself, from \`cauldron serve --append-only\` of that
folder over HTTP and over HTTPS (htpasswd login, bcrypt), and from versitygw (embedded,
\`internal/cmd/s3gateway\`, over a POSIX folder holding a copy of the same files), all on
127.0.0.1. The four took turns in each of $RUNS rounds; before each run the repository files
were read once and the page cache dropped, as in the sections above. MB/s is used bytes over
wall time; "rate" is the local median time over this one's. "client CPU s" and "server CPU s"
are user + system seconds (medians); "machine busy" is the CPUs the whole machine (this run
included) kept busy during each run: with $(nproc) CPUs, other work shows as figures near $(nproc).
Unlike \`scripts/bench.sh\`, this script does not wait for a quiet machine: client and server
share the machine's CPUs, and other work slows the network restores (two processes) and the
local one (one) differently, so judge the rates by that column and the load average.

| repository | median s | MB/s | client CPU s | server CPU s | runs (s) | machine busy (CPUs) | client peak RSS | rate | goal |
|---|---:|---:|---:|---:|---|---|---:|---:|---|
$(for k in "${KINDS[@]}"; do row "$k"; done)

Load average $LOAD_START before the restores, $LOAD_END after.

$(for c in "${CHECKS[@]}"; do echo "- $c"; done)

### Server memory under hostile load (goal: peak RSS under $RSS_GOAL_MIB MiB)

\`cauldron serve\` with its default limits (\`--max-uploads 32\`, 2 GiB per file, one minute
without progress) and an htpasswd login, over a copy of the repository above, one phase after the
other (\`internal/cmd/serverload\`, every request on a connection of its own, after one request that
has the server check the login once; the server's VmRSS sampled every 20 ms):

| phase | answers | server peak RSS |
|---|---|---:|
| $(field slow-uploads requests) uploads at once, each announcing a 64 MiB pack and sending 1 KiB a second, for $(field slow-uploads seconds) s, then dropped | $(field slow-uploads answers) ("open": no answer yet when dropped) | $(mib "$(field slow-uploads peak_rss_kib)") |
| $(field oversized-ranges requests) GETs at once of bytes 0–2 GiB of a pack of $PACK_SIZE bytes, read to the end | $(field oversized-ranges answers); $(field oversized-ranges received_bytes) bytes received | $(mib "$(field oversized-ranges peak_rss_kib)") |
| $(field whole-ranges requests) GETs at once of the whole pack as a range (bytes 0–$(($(field whole-ranges range_bytes) - 1))), read to the end | $(field whole-ranges answers); $(field whole-ranges received_bytes) bytes received | $(mib "$(field whole-ranges peak_rss_kib)") |
| one upload of a $(($(field large-upload bytes) >> 20)) MiB pack (well-formed for the server's checks) | $(field large-upload answer) in $(field large-upload seconds) s | $(mib "$(field large-upload peak_rss_kib)") |

Peak RSS of the server over its whole life (VmHWM): **$(mib "$HWM")** — goal $rss_verdict.

Reproduce (as root, after \`make build\`): \`BENCH_VOL_MIB=$VOL_MIB BENCH_RUNS=$RUNS BENCH_BIG_MIB=$BIG_MIB scripts/bench-net.sh\`
(\`make bench\` runs it with the standard sizes).
<!-- /bench-net -->
EOF
}
say "writing $DOC"
section >"$WORK/section.md"
if [ -f "$DOC" ] && grep -q '^<!-- bench-net' "$DOC"; then
	awk -v f="$WORK/section.md" '/^<!-- bench-net/ { while ((getline l < f) > 0) print l; skip = 1; next }
		/^<!-- \/bench-net -->/ { skip = 0; next } !skip' "$DOC" >"$WORK/doc.md"
else
	{ [ ! -f "$DOC" ] || { cat "$DOC"; echo; }; cat "$WORK/section.md"; } >"$WORK/doc.md"
fi
cp "$WORK/doc.md" "$DOC"
cat "$WORK/section.md"
[ "$CHECK_FAILED" = 0 ] || die "a restore was not identical to its source; the figures are void"

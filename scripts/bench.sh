#!/usr/bin/env bash
# make bench: cauldron against partclone + zstd on the same ext4 and NTFS disks, side by side in
# one run, and docs/benchmarks.md written from the figures of that run.
#
# Measured, every timed figure the median of BENCH_RUNS runs (3), caches dropped before each, on
# a quiet machine (see timed: runs disturbed by other work are repeated):
#   capture   cauldron capture (unencrypted and encrypted repository; --compression default and
#             better once each) vs partclone.<fs> -c | zstd -T0 -3, reading the same loop
#             devices of the source disk
#   restore   cauldron restore-disk to a new image file vs zstd -dc | partclone.restore -O, and vs
#             dd of the same number of zeros with O_DIRECT (the target disk's own write rate)
#   increment capture of the disk after rewriting 1 % of the files: new bytes vs the first capture
#   memory    peak RSS of every cauldron command (/usr/bin/time -v), and a capture and a restore
#             inside a memory cgroup limited to 512 MiB
# Restores are checked (e2fsck -fn / ntfsfix -n, and comparison with the source); a failed check
# marks the figures void and the script fails.
#
# Source disks are built once by scripts/bench-images.sh and cached in BENCH_CACHE
# (/var/tmp/cauldron-bench) under a data version; repositories, images and targets are made fresh
# in a temporary folder every run. Needs root: loop devices, mounts, drop_caches, cgroups.
# Settings for trying the script out: BENCH_VOL_MIB (2048), BENCH_RUNS (3), BENCH_CACHE, BENCH_DOC,
# BENCH_QUIET_WAIT (600 s), BENCH_OTHER_MAX (0.5 CPUs), BENCH_RETRIES (3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/bin/cauldron}
VOL_MIB=${BENCH_VOL_MIB:-2048}
RUNS=${BENCH_RUNS:-3}
CACHE=${BENCH_CACHE:-/var/tmp/cauldron-bench}
DOC=${BENCH_DOC:-$ROOT/docs/benchmarks.md}
DATA_VERSION=2 # change when scripts/bench-images.sh makes different disks
IMAGES=$CACHE/v$DATA_VERSION-${VOL_MIB}M
MEM_LIMIT_MIB=512
PC_WAIT=2 # seconds: partclone's default progress refresh (-f), which it waits out before exiting
PASSWORD=bench-password-not-secret
T_START=$EPOCHREALTIME
GIT_DESCRIBE=$(git describe --always --dirty 2>/dev/null || echo unknown)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# User-space CPU time of the whole machine (user + nice), in clock ticks. Other programs show
# here; kernel threads (which the benchmark's own I/O keeps busy: loop devices, writeback) do not.
cpu_user() { awk '/^cpu / { print $2 + $3 }' /proc/stat; }
CPU_USER0=$(cpu_user)

[ "$(id -u)" = 0 ] || { echo "bench: run as root (loop devices, mounts, drop_caches, cgroups)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench: $BIN missing; run make build" >&2; exit 1; }
for t in partclone.ext4 partclone.ntfs partclone.restore zstd jq sgdisk sfdisk mkfs.ext4 mkntfs ntfs-3g e2fsck ntfsfix losetup /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench: $t missing; run make deps" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/cauldron-bench-run.XXXXXX)
# The whole run uses one copy of the binary: a rebuild of bin/cauldron meanwhile changes nothing.
cp "$BIN" "$WORK/cauldron"
BIN=$WORK/cauldron
BIN_VERSION=$("$BIN" --version 2>&1 | head -n 1)
LOOPS=()
MOUNTS=()
CGROUPS=()
cleanup() {
	local m l c
	for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	for l in ${LOOPS[@]+"${LOOPS[@]}"}; do losetup -d "$l" 2>/dev/null || true; done
	for c in ${CGROUPS[@]+"${CGROUPS[@]}"}; do rmdir "$c" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '== %s\n' "$*"; }
fail_log() { echo "bench: $1 failed; last lines of $2:" >&2; tail -n 20 "$2" >&2; exit 1; }

# --- loop devices and mounts, all undone by cleanup ---------------------------------------------
# shellcheck source=loops.sh
. "$ROOT/scripts/loops.sh"
fs_mount_ro() { # fs dev dir
	mkdir -p "$3"
	if [ "$1" = ext4 ]; then mount -t ext4 -o ro,noload "$2" "$3"; else ntfs-3g -o ro "$2" "$3"; fi
	MOUNTS+=("$3")
}
fs_umount() {
	local keep=() m
	umount "$1"
	for m in "${MOUNTS[@]}"; do [ "$m" = "$1" ] || keep+=("$m"); done
	MOUNTS=(${keep[@]+"${keep[@]}"})
}

# --- measuring ----------------------------------------------------------------------------------
declare -A T   # "fs.op" -> seconds of each run, space-separated
declare -A RSS # "fs.op" -> peak RSS in KiB, the largest of its runs
declare -A C   # "fs.op" -> CPU seconds (user + system) of each run, space-separated
declare -A V   # other figures
CHECKS=()      # "fs|what|result"
CHECK_FAILED=0
DROP=ok

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || DROP=failed
}

# timed KEY WARM CMD...: one timed run of CMD, its wall seconds appended to T[KEY]:
#  1. PREP (an array the caller sets, then cleared) resets what CMD changes: a new repository, no
#     target file. It makes a run repeatable; without it a run is never repeated.
#  2. WARM (a file or folder; - for none) is read once: this puts the virtual disk's host-side
#     cache in the same (warm) state for every tool and round; cold reads of this disk run at a
#     fraction of warm ones, and which data the host still holds is otherwise chance.
#  3. Wait until the machine is quiet (quiet_gate), sync, drop the page cache, run CMD.
#  4. If other programs used more than OTHER_MAX CPUs (user time) on average during the run, the
#     run is disturbed: it is repeated from 1, up to RETRIES times (and REPEAT_BUDGET times in
#     all); a run kept although disturbed is counted in DISTURBED[KEY].
PREP=()
timed() {
	local key=$1 warm=$2 a b b0 b1 other tries=0 prep=(${PREP[@]+"${PREP[@]}"})
	shift 2
	PREP=()
	while :; do
		[ ${#prep[@]} = 0 ] || "${prep[@]}"
		[ "$warm" = - ] || find "$warm" -type f -exec cat {} + >/dev/null
		quiet_gate
		drop_caches
		times >"$WORK/times0"
		b0=$(cpu_user)
		a=$EPOCHREALTIME
		"$@"
		b=$EPOCHREALTIME
		b1=$(cpu_user)
		times >"$WORK/times1"
		other=$(other_cpus "$a" "$b" "$b0" "$b1")
		tries=$((tries + 1))
		OTHER_MAX_SEEN[$key]=$(awk -v a="${OTHER_MAX_SEEN[$key]:-0}" -v b="$other" 'BEGIN { print (b > a ? b : a) }')
		awk -v o="$other" -v m="$OTHER_MAX" 'BEGIN { exit !(o > m) }' || break
		if [ "$tries" -gt "$RETRIES" ] || [ ${#prep[@]} = 0 ] || [ "$REPEATED" -ge "$REPEAT_BUDGET" ]; then
			DISTURBED[$key]=$((${DISTURBED[$key]:-0} + 1))
			break
		fi
		REPEATED=$((REPEATED + 1))
		echo "   ($key: other work used $other CPUs during the run; repeating it)"
	done
	T[$key]+="$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b - a }') "
}
OTHER_MAX=${BENCH_OTHER_MAX:-0.25}
RETRIES=${BENCH_RETRIES:-3}
REPEAT_BUDGET=${BENCH_REPEATS:-40}
REPEATED=0
declare -A DISTURBED OTHER_MAX_SEEN
# user seconds in a `times` output file (first column): the shell's and its waited-for children's
times_user() { awk '{ split($1, t, /[ms]/); s += t[1] * 60 + t[2] } END { printf "%.3f", s }' "$1"; }
# other_cpus A B USER0 USER1: CPUs of user time used on average between wall times A and B by
# other programs: the machine's user time less this script's and its commands' ($WORK/times0, 1)
other_cpus() {
	awk -v a="$1" -v b="$2" -v u0="$3" -v u1="$4" -v hz="$(getconf CLK_TCK)" -v o0="$(times_user "$WORK/times0")" -v o1="$(times_user "$WORK/times1")" \
		'BEGIN { o = ((u1 - u0) / hz - (o1 - o0)) / (b - a); if (o < 0) o = 0; printf "%.2f", o }'
}
# quiet_gate: waits while other programs keep the machine more than 10 % busy (user time sampled
# over 1 s), at most QUIET_BUDGET seconds over the whole run.
QUIET_BUDGET=${BENCH_QUIET_WAIT:-600}
QUIET_WAITED=0
quiet_gate() {
	local b0 b1 busy
	while :; do
		b0=$(cpu_user)
		sleep 1
		b1=$(cpu_user)
		busy=$(awk -v a="$b0" -v b="$b1" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" 'BEGIN { printf "%.0f", (b - a) / hz / n * 100 }')
		[ "$busy" -gt 10 ] || return 0
		[ "$QUIET_WAITED" -lt "$QUIET_BUDGET" ] || return 0
		[ $((QUIET_WAITED % 30)) != 0 ] || echo "   (waiting for the machine to be quiet: ${busy} % busy with other work)"
		QUIET_WAITED=$((QUIET_WAITED + 1))
	done
}

last() { echo "${T[$1]}" | awk '{ print $NF }'; }
note_cpu() { # KEY time-files...: appends the files' user + system seconds to C[KEY]
	local key=$1
	shift
	C[$key]+="$(awk -F': ' '/(User|System) time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$@") "
}
rss_of() { awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$1"; }
note_rss() { # KEY KiB
	local old=${RSS[$1]:-0}
	[ "$2" -gt "$old" ] && RSS[$1]=$2
	return 0
}

# cld KEY ARGS...: cauldron ARGS under /usr/bin/time -v; output to $WORK/cauldron.log, stdout
# also to $WORK/out; peak RSS noted under KEY.
cld() {
	local key=$1
	shift
	if ! /usr/bin/time -v -o "$WORK/time.txt" "$BIN" "$@" >"$WORK/out" 2>"$WORK/err"; then
		cat "$WORK/out" "$WORK/err" >>"$WORK/cauldron.log"
		fail_log "cauldron $*" "$WORK/cauldron.log"
	fi
	cat "$WORK/out" "$WORK/err" >>"$WORK/cauldron.log"
	note_rss "$key" "$(rss_of "$WORK/time.txt")"
	note_cpu "$key" "$WORK/time.txt"
}
cld_enc() { CAULDRON_PASSWORD=$PASSWORD cld "$@"; }

# The partclone side: the image format partclone writes, compressed as Clonezilla does; the
# output file is synced, as cauldron syncs its packs.
pc_capture() { # KEY fs partition-dev out
	/usr/bin/time -v -o "$WORK/pc.time" partclone."$2" -c -q -s "$3" -o - -L "$WORK/partclone.log" 2>>"$WORK/partclone.err" |
		/usr/bin/time -v -o "$WORK/zstd.time" zstd -T0 -3 -q >"$4"
	sync "$4"
	note_rss "$1" "$(rss_of "$WORK/pc.time")"
	note_rss "$1.zstd" "$(rss_of "$WORK/zstd.time")"
	note_cpu "$1" "$WORK/pc.time" "$WORK/zstd.time"
}
pc_restore() { # KEY in target
	/usr/bin/time -v -o "$WORK/zstd.time" zstd -dc -q "$2" |
		/usr/bin/time -v -o "$WORK/pc.time" partclone.restore -q -s - -O "$3" -L "$WORK/partclone.log" 2>>"$WORK/partclone.err"
	sync "$3"
	note_rss "$1" "$(rss_of "$WORK/pc.time")"
	note_rss "$1.zstd" "$(rss_of "$WORK/zstd.time")"
	note_cpu "$1" "$WORK/pc.time" "$WORK/zstd.time"
}
new_repo() { # plain|enc DIR: a new, empty repository
	rm -rf "$2"
	if [ "$1" = enc ]; then cld_enc init init --repo "$2"; else cld init init --repo "$2" --no-password; fi
}
new_file() { rm -f "$1" && truncate -s "$2" "$1"; } # PATH SIZE: a new sparse file
copy_repo() { rm -rf "$2" && cp -al "$1" "$2"; }   # FROM TO
read_all() { cat "$@" >/dev/null; }
dd_write() { dd if=/dev/zero of="$1" bs=4M count="$2" oflag=direct conv=fsync status=none; }

# gens REPO MACHINE: lists the machine's generations into $WORK/gens.json; gstat INDEX FIELD: a
# stats field of its INDEX-th generation (0: the first).
gens() {
	cld_enc generations generations --repo "$1" --machine "$2" --json
	cp "$WORK/out" "$WORK/gens.json"
}
gstat() { jq -r --argjson i "$1" --arg f "$2" 'sort_by(.time) | .[$i].stats[$f]' "$WORK/gens.json"; }

# check fs what CMD...: runs a correctness check of cauldron, records the result; a failure voids
# the figures. check_yardstick: the same for partclone, recorded but not voiding anything.
check() {
	local fs=$1 what=$2
	shift 2
	if "$@" >"$WORK/check.log" 2>&1; then
		CHECKS+=("$fs|$what|clean")
	else
		CHECKS+=("$fs|$what|**FAILED** ($(check_tail))")
		CHECK_FAILED=1
	fi
}
check_yardstick() {
	local fs=$1 what=$2
	shift 2
	if "$@" >"$WORK/check.log" 2>&1; then
		CHECKS+=("$fs|$what|clean")
	else
		CHECKS+=("$fs|$what|not clean: $(check_tail) (the yardstick's result; it does not void cauldron's figures)")
	fi
}
check_tail() { grep -v '^$' "$WORK/check.log" | tail -n 3 | tr '\n' ' ' | sed 's/ *$//' | cut -c1-240; }
fsck_dev() { # fs dev
	if [ "$1" = ext4 ]; then
		e2fsck -fn "$2"
	else
		ntfsfix -n "$2" | tee /dev/stderr | grep -q 'processed successfully'
	fi
}
fsck_part_of_disk() { # fs disk-image: the partition of a restored disk image
	local p rc=0
	loop_attach p -r -o "$PART_OFF" --sizelimit "$PART_SIZE" "$2"
	fsck_dev "$1" "$p" || rc=$?
	loop_detach "$p"
	return $rc
}
same_files() { # fs disk-image-a disk-image-b: every file's content and name equal
	local a b rc=0
	loop_attach a -r -o "$PART_OFF" --sizelimit "$PART_SIZE" "$2"
	loop_attach b -r -o "$PART_OFF" --sizelimit "$PART_SIZE" "$3"
	fs_mount_ro "$1" "$a" "$WORK/ma"
	fs_mount_ro "$1" "$b" "$WORK/mb"
	diff -r --no-dereference "$WORK/ma" "$WORK/mb" || rc=$?
	fs_umount "$WORK/ma"
	fs_umount "$WORK/mb"
	loop_detach "$a"
	loop_detach "$b"
	return $rc
}

# mem_limited KEY ARGS...: one cauldron command inside a fresh memory cgroup of MEM_LIMIT_MIB.
CG_KIND=
cg_make() { # VAR: a new memory cgroup with the limit, or fails
	local _d
	if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
		_d=/sys/fs/cgroup/memory/cauldron-bench-$$-$RANDOM
		mkdir "$_d" || return 1
		CGROUPS+=("$_d")
		echo $((MEM_LIMIT_MIB << 20)) >"$_d/memory.limit_in_bytes" || return 1
		[ -f "$_d/memory.memsw.limit_in_bytes" ] && { echo $((MEM_LIMIT_MIB << 20)) >"$_d/memory.memsw.limit_in_bytes" || true; }
		CG_KIND="cgroup v1 memory controller: memory.limit_in_bytes = $MEM_LIMIT_MIB MiB (page cache included, no swap)"
	elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		_d=/sys/fs/cgroup/cauldron-bench-$$-$RANDOM
		grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || echo +memory >/sys/fs/cgroup/cgroup.subtree_control || return 1
		mkdir "$_d" || return 1
		CGROUPS+=("$_d")
		echo $((MEM_LIMIT_MIB << 20)) >"$_d/memory.max" || return 1
		[ -f "$_d/memory.swap.max" ] && { echo 0 >"$_d/memory.swap.max" || true; }
		CG_KIND="cgroup v2: memory.max = $MEM_LIMIT_MIB MiB, memory.swap.max = 0"
	else
		return 1
	fi
	printf -v "$1" %s "$_d"
}
cg_peak() { # dir: the cgroup's peak charge in bytes
	cat "$1/memory.max_usage_in_bytes" 2>/dev/null || cat "$1/memory.peak" 2>/dev/null || echo 0
}
cg_ooms() { # dir: OOM kills in the cgroup
	local f
	for f in "$1/memory.oom_control" "$1/memory.events"; do
		[ -f "$f" ] && { awk '$1 == "oom_kill" { n = $2 } END { print n + 0 }' "$f"; return 0; }
	done
	echo unknown
}
mem_limited() { # KEY ARGS...
	local key=$1 cg a b ok=yes
	shift
	if ! cg_make cg; then
		V[$key.cg]="not run: no usable memory cgroup"
		return 0
	fi
	drop_caches
	a=$EPOCHREALTIME
	CAULDRON_PASSWORD=$PASSWORD bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" \
		/usr/bin/time -v -o "$WORK/time.txt" "$BIN" "$@" >>"$WORK/cauldron.log" 2>&1 || ok="NO (exit status $?)"
	b=$EPOCHREALTIME
	V[$key.cg]="completed: $ok; $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f s", b - a }'); peak RSS $(($(rss_of "$WORK/time.txt") / 1024)) MiB; cgroup peak $(($(cg_peak "$cg") >> 20)) MiB; OOM kills $(cg_ooms "$cg")"
	V[$key.ok]=$ok
	rmdir "$cg" 2>/dev/null || true
}

# --- the source disks -----------------------------------------------------------------------------
if [ -f "$IMAGES/complete" ]; then
	say "source disks from the cache: $IMAGES"
	IMAGES_NOTE="taken from the cache ($IMAGES, built $(. "$IMAGES/info.env" && echo "$BUILT"))"
else
	say "building the source disks into $IMAGES (once)"
	# Disks of other data versions are out of date.
	find "$CACHE" -mindepth 1 -maxdepth 1 -name 'v*' ! -name "v$DATA_VERSION-*" -exec rm -rf {} + 2>/dev/null || true
	t0=$EPOCHREALTIME
	mkdir -p "$CACHE"
	"$ROOT/scripts/bench-images.sh" "$IMAGES" "$VOL_MIB"
	IMAGES_NOTE="built by this run in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f s", b - a }') and cached in $IMAGES"
fi
# shellcheck source=/dev/null
. "$IMAGES/info.env"

# --- one filesystem -------------------------------------------------------------------------------
bench_fs() {
	local fs=$1 img1 img2 i disk1 disk2 part1 r out n lv
	img1=$IMAGES/$fs-1.img
	img2=$IMAGES/$fs-2.img
	say "$fs: captures ($RUNS rounds: cauldron unencrypted, cauldron encrypted, partclone + zstd)"
	loop_attach disk1 -r "$img1"
	loop_attach disk2 -r "$img2"
	loop_attach part1 -r -o "$PART_OFF" --sizelimit "$PART_SIZE" "$img1"
	for i in $(seq 1 "$RUNS"); do
		PREP=(true)
		timed "$fs.rd_src" "$img1" read_all "$img1"
		PREP=(new_repo plain "$WORK/$fs-plain-$i")
		timed "$fs.cap_plain" "$img1" cld "$fs.cap_plain" capture --repo "$WORK/$fs-plain-$i" --machine "$fs" "$disk1"
		PREP=(new_repo enc "$WORK/$fs-enc-$i")
		timed "$fs.cap_enc" "$img1" cld_enc "$fs.cap_enc" capture --repo "$WORK/$fs-enc-$i" --machine "$fs" "$disk1"
		PREP=(rm -f "$WORK/$fs-$i.pc.zst")
		timed "$fs.cap_pc" "$img1" pc_capture "$fs.cap_pc" "$fs" "$part1" "$WORK/$fs-$i.pc.zst"
		echo "   round $i: $(last "$fs.cap_plain") $(last "$fs.cap_enc") $(last "$fs.cap_pc") s"
	done
	for lv in default better; do
		PREP=(new_repo plain "$WORK/$fs-$lv")
		timed "$fs.cap_$lv" "$img1" cld "$fs.cap_$lv" capture --repo "$WORK/$fs-$lv" --machine "$fs" --compression "$lv" "$disk1"
		gens "$WORK/$fs-$lv" "$fs"
		V[$fs.new_$lv]=$(gstat 0 newBytes)
		rm -rf "${WORK:?}/$fs-$lv"
	done
	gens "$WORK/$fs-plain-1" "$fs"
	V[$fs.used]=$(gstat 0 usedBytes)
	V[$fs.new_plain]=$(gstat 0 newBytes)
	gens "$WORK/$fs-enc-1" "$fs"
	V[$fs.new_enc]=$(gstat 0 newBytes)
	V[$fs.pc_size]=$(stat -c %s "$WORK/$fs-1.pc.zst")
	V[$fs.pc_used]=$(awk '/^Block size:/ { bs = $3 } /^Space in use:/ { n = $(NF - 1) } END { printf "%.0f\n", n * bs }' "$WORK/partclone.log")
	for i in $(seq 2 "$RUNS"); do rm -rf "$WORK/$fs-enc-$i" "$WORK/$fs-$i.pc.zst"; done

	say "$fs: restores ($RUNS rounds: cauldron unencrypted, cauldron encrypted, partclone + zstd, dd)"
	out=$WORK/restored.img
	n=$(((V[$fs.used] + (4 << 20) - 1) / (4 << 20)))
	V[$fs.dd_bytes]=$((n * (4 << 20)))
	for i in $(seq 1 "$RUNS"); do
		PREP=(rm -f "$out")
		timed "$fs.res_plain" "$WORK/$fs-plain-1" cld "$fs.res_plain" restore-disk --no-verify --repo "$WORK/$fs-plain-1" --machine "$fs" --generation latest --disk disk0 --to "$out"
		if [ "$i" = 1 ]; then
			check "$fs" "cauldron restore (unencrypted), first generation: $( [ "$fs" = ext4 ] && echo 'e2fsck -fn' || echo 'ntfsfix -n') on the partition" fsck_part_of_disk "$fs" "$out"
			check "$fs" "cauldron restore (unencrypted), first generation: whole disk byte-identical to the source (cmp)" cmp "$img1" "$out"
		fi
		PREP=(rm -f "$out")
		timed "$fs.res_enc" "$WORK/$fs-enc-1" cld_enc "$fs.res_enc" restore-disk --no-verify --repo "$WORK/$fs-enc-1" --machine "$fs" --generation latest --disk disk0 --to "$out"
		if [ "$i" = 1 ]; then
			check "$fs" "cauldron restore (encrypted), first generation: whole disk byte-identical to the source (cmp)" cmp "$img1" "$out"
		fi
		rm -f "$out"
		PREP=(new_file "$WORK/pc.part" "$PART_SIZE")
		timed "$fs.res_pc" "$WORK/$fs-1.pc.zst" pc_restore "$fs.res_pc" "$WORK/$fs-1.pc.zst" "$WORK/pc.part"
		if [ "$i" = 1 ]; then
			check_yardstick "$fs" "partclone restore: $( [ "$fs" = ext4 ] && echo 'e2fsck -fn' || echo 'ntfsfix -n') on the partition" fsck_dev "$fs" "$WORK/pc.part"
		fi
		rm -f "$WORK/pc.part"
		PREP=(rm -f "$WORK/dd.out")
		timed "$fs.res_dd" - dd_write "$WORK/dd.out" "$n"
		rm -f "$WORK/dd.out"
		echo "   round $i: $(last "$fs.res_plain") $(last "$fs.res_enc") $(last "$fs.res_pc") $(last "$fs.res_dd") s"
	done
	rm -rf "$WORK/$fs-enc-1" "$WORK/$fs-"*.pc.zst

	say "$fs: incremental captures after rewriting $CHANGED_FILES of $FILES files"
	for i in $(seq 1 "$RUNS"); do
		# Into a copy of repository i (hard links: repository files are never changed in place),
		# so that a disturbed run can be repeated from the same first generation.
		r=$WORK/$fs-inc-$i
		PREP=(copy_repo "$WORK/$fs-plain-$i" "$r")
		timed "$fs.inc" "$img2" cld "$fs.inc" capture --repo "$r" --machine "$fs" "$disk2"
		gens "$r" "$fs"
		V[$fs.inc_new]+="$(gstat 1 newBytes) "
		V[$fs.inc_first]+="$(gstat 0 newBytes) "
	done
	echo "   ${T[$fs.inc]}; new bytes ${V[$fs.inc_new]}"
	cld "$fs.res_gen2" restore-disk --repo "$WORK/$fs-inc-1" --machine "$fs" --generation latest --disk disk0 --to "$out"
	check "$fs" "cauldron restore, second generation: $( [ "$fs" = ext4 ] && echo 'e2fsck -fn' || echo 'ntfsfix -n') on the partition" fsck_part_of_disk "$fs" "$out"
	check "$fs" "cauldron restore, second generation: every file identical to the changed source (diff -r)" same_files "$fs" "$img2" "$out"
	rm -f "$out"

	say "$fs: capture and restore inside a $MEM_LIMIT_MIB MiB memory cgroup"
	cld_enc init init --repo "$WORK/$fs-cg"
	mem_limited "$fs.cg_cap" capture --repo "$WORK/$fs-cg" --machine "$fs" "$disk1"
	mem_limited "$fs.cg_res" restore-disk --no-verify --repo "$WORK/$fs-cg" --machine "$fs" --generation latest --disk disk0 --to "$out"
	if [ "${V[$fs.cg_res.ok]:-}" = yes ]; then
		check "$fs" "cauldron restore inside the memory cgroup: whole disk byte-identical to the source (cmp)" cmp "$img1" "$out"
	fi
	rm -rf "$out" "$WORK/$fs-cg" "$WORK/$fs-plain-"* "$WORK/$fs-inc-"*
	loop_detach "$disk1"
	loop_detach "$disk2"
	loop_detach "$part1"
}

# partclone's progress wait, whatever the size: cloning and restoring an empty 16 MiB ext4.
pc_fixed() {
	local i
	say "partclone's progress wait: clone and restore of an empty 16 MiB ext4 ($RUNS rounds)"
	truncate -s 16M "$WORK/tiny.img"
	mkfs.ext4 -q -F "$WORK/tiny.img"
	for i in $(seq 1 "$RUNS"); do
		PREP=(rm -f "$WORK/tiny.zst")
		timed pc_fixed.cap - pc_capture pc_fixed.cap ext4 "$WORK/tiny.img" "$WORK/tiny.zst"
		PREP=(new_file "$WORK/tiny.part" $((16 << 20)))
		timed pc_fixed.res - pc_restore pc_fixed.res "$WORK/tiny.zst" "$WORK/tiny.part"
	done
	echo "   capture ${T[pc_fixed.cap]}s; restore ${T[pc_fixed.res]}s"
	rm -f "$WORK/tiny."*
}

pc_fixed
bench_fs ext4
bench_fs ntfs

# --- the report -----------------------------------------------------------------------------------
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { echo "${T[$1]}" | median; }
runs() { echo "${T[$1]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.2f", (i > 1 ? ", " : ""), $i }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rss_mib() { [ -n "${RSS[$1]:-}" ] && awk -v k="${RSS[$1]}" 'BEGIN { printf "%.0f MiB", k / 1024 }' || echo "–"; }
disturbed_note() {
	local k n=0 list=
	for k in "${!DISTURBED[@]}"; do
		n=$((n + DISTURBED[$k]))
		list="$list${list:+, }$(label "$k") (${DISTURBED[$k]})"
	done
	if [ "$n" = 0 ]; then echo "no run was kept disturbed"; else echo "**$n runs were disturbed still after the repeats allowed and were kept: $list**"; fi
}
label() { # a T/RSS key in words
	echo "$1" | sed 's/cap_plain/cauldron capture, unencrypted/; s/cap_enc/cauldron capture, encrypted/;
		s/cap_default/cauldron capture --compression default/; s/cap_better/cauldron capture --compression better/;
		s/cap_pc/partclone capture/; s/\.inc$/ cauldron incremental capture/; s/res_plain/cauldron restore-disk, unencrypted/;
		s/res_enc/cauldron restore-disk, encrypted/; s/res_gen2/cauldron restore-disk of the second generation/; s/res_pc/partclone restore/; s/res_dd/dd/; s/rd_src/cat of the source/;
		s/^pc_fixed\.cap/partclone capture of an empty ext4/; s/^pc_fixed\.res/partclone restore of an empty ext4/;
		s/\./ /; s/^ntfs /NTFS /'
}
# widest: the command whose runs differ most (largest max/min).
widest() {
	local k best=0 line=
	for k in "${!T[@]}"; do
		case $k in *rd_src | pc_fixed.*) continue ;; esac
		read -r r mn mx < <(echo "${T[$k]}" | awk '{ mn = $1; mx = $1; for (i = 2; i <= NF; i++) { if ($i < mn) mn = $i; if ($i > mx) mx = $i }
			printf "%.4f %.2f %.2f\n", (NF > 1 ? mx / mn : 1), mn, mx }')
		if awk -v a="$r" -v b="$best" 'BEGIN { exit !(a > b) }'; then
			best=$r
			line="$(label "$k"): $mn to $mx s"
		fi
	done
	echo "$line"
}
goal_speed() { # label partclone-s partclone-s-less-wait cauldron-s goal: a Goals row of a speed ratio
	local r w
	r=$(ratio "$2" "$4")
	w=$(ratio "$3" "$4")
	printf '| %s | %s × | %s | %s × | %s |\n' "$1" "$r" "$(verdict "$r" "$5" ge)" "$w" "$(verdict "$w" "$5" ge)"
}
verdict() { awk -v v="$1" -v goal="$2" -v dir="$3" 'BEGIN { ok = (dir == "ge" ? v >= goal : v <= goal); print (ok ? "met" : "**NOT met**") }'; }

row() { # label key bytes more-cells: one table row from the medians of T[key] and C[key]
	local m cpu=–
	m=$(med "$2")
	[ -z "${C[$2]:-}" ] || cpu=$(echo "${C[$2]}" | median)
	printf '| %s | %.2f | %s | %s | %s%s | %s |\n' "$1" "$m" "$(mbps "$3" "$m")" "$cpu" "$(runs "$2")" "${DISTURBED[$2]:+ (**${DISTURBED[$2]} disturbed**)}" "$4"
}

fs_section() {
	local fs=$1 used inc_ratio inc_worst rss_cap rss_res name pc_cap_w pc_res_w k
	name=$([ "$fs" = ext4 ] && echo ext4 || echo NTFS)
	used=${V[$fs.used]}
	# partclone's medians less its whole progress interval: the worst case for cauldron.
	pc_cap_w=$(awk -v a="$(med "$fs.cap_pc")" -v w="$PC_WAIT" 'BEGIN { print a - w }')
	pc_res_w=$(awk -v a="$(med "$fs.res_pc")" -v w="$PC_WAIT" 'BEGIN { print a - w }')
	inc_worst=$(paste -d' ' <(echo "${V[$fs.inc_new]}" | tr ' ' '\n' | awk NF) <(echo "${V[$fs.inc_first]}" | tr ' ' '\n' | awk NF) |
		awk '{ r = $1 / $2 * 100; if (r > w) w = r } END { printf "%.2f", w }')
	inc_ratio=$(paste -d' ' <(echo "${V[$fs.inc_new]}" | tr ' ' '\n' | awk NF) <(echo "${V[$fs.inc_first]}" | tr ' ' '\n' | awk NF) |
		awk '{ printf "%s%.2f %%", (NR > 1 ? ", " : ""), $1 / $2 * 100 }')
	rss_cap=0
	for k in cap_plain cap_enc cap_default cap_better inc; do [ "${RSS[$fs.$k]:-0}" -gt "$rss_cap" ] && rss_cap=${RSS[$fs.$k]}; done
	rss_res=0
	for k in res_plain res_enc res_gen2; do [ "${RSS[$fs.$k]:-0}" -gt "$rss_res" ] && rss_res=${RSS[$fs.$k]}; done
	cat <<EOF
## $name

Used bytes (cauldron \`stats.usedBytes\` of the first generation, the whole disk): $used
($(mib "$used") MiB); partclone reports $(mib "${V[$fs.pc_used]}") MiB in use in the partition. MB/s below is
this used-bytes figure divided by the wall time, for every tool, so the MB/s ratios are the
inverse time ratios.

### Capture

| tool | median s | MB/s | CPU s | runs (s) | stored | peak RSS |
|---|---:|---:|---:|---|---:|---:|
$(row "cauldron capture, unencrypted (fastest)" "$fs.cap_plain" "$used" "$(mib "${V[$fs.new_plain]}") MiB | $(rss_mib "$fs.cap_plain")")
$(row "cauldron capture, encrypted (fastest)" "$fs.cap_enc" "$used" "$(mib "${V[$fs.new_enc]}") MiB | $(rss_mib "$fs.cap_enc")")
$(row "cauldron capture, unencrypted, \`--compression default\` (1 run)" "$fs.cap_default" "$used" "$(mib "${V[$fs.new_default]}") MiB | $(rss_mib "$fs.cap_default")")
$(row "cauldron capture, unencrypted, \`--compression better\` (1 run)" "$fs.cap_better" "$used" "$(mib "${V[$fs.new_better]}") MiB | $(rss_mib "$fs.cap_better")")
$(row "\`partclone.$fs -c \| zstd -T0 -3\`, synced" "$fs.cap_pc" "$used" "$(mib "${V[$fs.pc_size]}") MiB | partclone $(rss_mib "$fs.cap_pc"), zstd $(rss_mib "$fs.cap_pc.zstd")")
$(row "reference: \`cat\` of the source image file (the source's read rate)" "$fs.rd_src" "$used" "– | –")

"stored" is the first generation's \`stats.newBytes\` for cauldron and the size of the \`.zst\`
image for partclone. "CPU s" is user + system time (median over the runs; partclone + zstd
together).

### Restore

| tool | median s | MB/s | CPU s | runs (s) | peak RSS |
|---|---:|---:|---:|---|---:|
$(row "cauldron restore-disk, unencrypted repository" "$fs.res_plain" "$used" "$(rss_mib "$fs.res_plain")")
$(row "cauldron restore-disk, encrypted repository" "$fs.res_enc" "$used" "$(rss_mib "$fs.res_enc")")
$(row "\`zstd -dc \| partclone.restore -O\`, then \`sync FILE\`" "$fs.res_pc" "$used" "partclone $(rss_mib "$fs.res_pc"), zstd $(rss_mib "$fs.res_pc.zstd")")
$(row "\`dd oflag=direct conv=fsync\` of $(mib "${V[$fs.dd_bytes]}") MiB of zeros (disk write rate)" "$fs.res_dd" "${V[$fs.dd_bytes]}" "–")

cauldron restores the whole disk (GPT, partition, backup GPT) to a new sparse image file and
fsyncs it; partclone restores the partition into a new sparse file of the partition's size.
The dd row's MB/s is its own byte count divided by its time.

### Incremental capture

After rewriting $CHANGED_FILES of the $FILES files ($(mib "$CHANGED_BYTES") MiB of $(mib "$FILE_BYTES") MiB of file data,
$(awk -v a="$CHANGED_BYTES" -v b="$FILE_BYTES" 'BEGIN { printf "%.2f", a / b * 100 }') % of the bytes) with new content of the same kind and size, a capture into each of the
$RUNS unencrypted repositories stored $(echo "${V[$fs.inc_new]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? ", " : ""), $i }') new bytes against
$(echo "${V[$fs.inc_first]}" | awk '{ printf "%s", $1 }') for the first generation: $inc_ratio. Median time $(printf '%.2f' "$(med "$fs.inc")") s (runs $(runs "$fs.inc")),
$(mbps "$used" "$(med "$fs.inc")") MB/s, peak RSS $(rss_mib "$fs.inc").

### Goals

| goal | figure | verdict | with ${PC_WAIT} s off partclone's time | verdict |
|---|---|---|---|---|
$(goal_speed "capture ≥ 1.2 × partclone + zstd (unencrypted)" "$(med "$fs.cap_pc")" "$pc_cap_w" "$(med "$fs.cap_plain")" 1.2)
$(goal_speed "capture ≥ 1.2 × partclone + zstd (encrypted)" "$(med "$fs.cap_pc")" "$pc_cap_w" "$(med "$fs.cap_enc")" 1.2)
$(goal_speed "restore ≥ 1.5 × partclone + zstd (unencrypted)" "$(med "$fs.res_pc")" "$pc_res_w" "$(med "$fs.res_plain")" 1.5)
$(goal_speed "restore ≥ 1.5 × partclone + zstd (encrypted)" "$(med "$fs.res_pc")" "$pc_res_w" "$(med "$fs.res_enc")" 1.5)
| second generation's new bytes ≤ 2 % of the first's (worst run) | $inc_worst % | $(verdict "$inc_worst" 2 le) | | |
| capture peak RSS ≤ $MEM_LIMIT_MIB MiB (all captures) | $((rss_cap / 1024)) MiB | $(verdict "$rss_cap" $((MEM_LIMIT_MIB * 1024)) le) | | |
| restore peak RSS ≤ $MEM_LIMIT_MIB MiB | $((rss_res / 1024)) MiB | $(verdict "$rss_res" $((MEM_LIMIT_MIB * 1024)) le) | | |
| capture completes inside the $MEM_LIMIT_MIB MiB cgroup | ${V[$fs.cg_cap.cg]} | $([ "${V[$fs.cg_cap.ok]:-}" = yes ] && echo met || echo "**NOT met**") | | |
| restore completes inside the $MEM_LIMIT_MIB MiB cgroup | ${V[$fs.cg_res.cg]} | $([ "${V[$fs.cg_res.ok]:-}" = yes ] && echo met || echo "**NOT met**") | | |

The ratios are partclone's median time over cauldron's. The verdicts are for the commands as
given; the last two columns take partclone's whole progress interval off its time (see
"partclone's progress wait"), the most that wait can account for.

EOF
}

say "writing $DOC"
T_END=$EPOCHREALTIME
# User time of other programs during the run.
times >"$WORK/times.end"
cpu_other=$(
	{
		echo "$CPU_USER0 $(cpu_user) $(getconf CLK_TCK) $(nproc) $T_START $T_END"
		cat "$WORK/times.end"
	} | awk 'NR == 1 { busy = ($2 - $1) / $3; avail = $4 * ($6 - $5); next }
		{ split($1, t, /[ms]/); own += t[1] * 60 + t[2] }
		END { o = busy - own; if (o < 0) o = 0; printf "%.0f s of the %.0f CPU-seconds of the run (%.0f %%)", o, avail, o / avail * 100 }'
)
disk_dev=$(findmnt -no SOURCE --target "$WORK" | sed 's|\[.*||')
disk_name=$(lsblk -no PKNAME "$disk_dev" 2>/dev/null | head -n 1)
[ -n "$disk_name" ] || disk_name=$(basename "$disk_dev")
disk_desc=$(lsblk -dno NAME,SIZE,ROTA,MODEL "/dev/$disk_name" 2>/dev/null | awk '{ printf "/dev/%s, %s, kernel rotational flag %s%s", $1, $2, $3, (NF > 3 ? ", model " substr($0, index($0, $4)) : "") }')
[ -e "/sys/block/$disk_name/device/driver" ] && [ "$(basename "$(readlink -f "/sys/block/$disk_name/device/driver")")" = virtio_blk ] && disk_desc="$disk_desc, virtio (a virtual disk: the host may cache it)"
[ -n "$disk_desc" ] || disk_desc=$disk_dev
disk_desc="$disk_desc ($(findmnt -no FSTYPE --target "$WORK") at $(findmnt -no TARGET --target "$WORK"), holding the sources, repositories and targets)"
drop_note="dropped (\`echo 3 > /proc/sys/vm/drop_caches\` after \`sync\`) before every timed run"
[ "$DROP" = ok ] || drop_note="**could not be dropped** (writing /proc/sys/vm/drop_caches failed): reads may have come from the page cache"
status="All correctness checks passed."
[ "$CHECK_FAILED" = 0 ] || status="**NUMBERS VOID: a correctness check failed (see Correctness).**"
params=""
[ "$VOL_MIB" = 2048 ] && [ "$RUNS" = 3 ] || params=" (with BENCH_VOL_MIB=$VOL_MIB BENCH_RUNS=$RUNS: not the standard sizes)"

mkdir -p "$(dirname "$DOC")"
{
	cat <<EOF
# Benchmarks

Produced by \`make bench\`$params (\`scripts/bench.sh\`, \`scripts/bench-hive.sh\` and \`scripts/bench-net.sh\` for their sections, which write this file; nothing here is typed by
hand). $status

- date: $(date -u '+%Y-%m-%d %H:%M UTC'); whole run $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f s", b - a }')
- cauldron: \`$BIN_VERSION\`; \`git describe --always --dirty\` at the start of the run: $GIT_DESCRIBE
- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r), $( . /etc/os-release && echo "$PRETTY_NAME")
- disk: $disk_desc
- yardsticks: $(partclone.ext4 --version 2>&1 | awk '/Partclone/ { print "partclone", $3; exit }'), zstd $(zstd --version | grep -o 'v[0-9.]*'), GNU dd
- page cache: $drop_note
- other work on the machine: before each timed run the script waited until other programs kept
  the machine at most 10 % busy (${QUIET_WAITED} s of waiting in all, of at most ${QUIET_BUDGET} s); a run during which other
  programs used more than ${OTHER_MAX} CPUs on average was repeated (${REPEATED} runs were); $(disturbed_note).
  Over the whole run, other programs used $cpu_other
  (user time; load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end)
- timing: wall clock around the whole command (for pipelines, the whole pipeline plus \`sync\`); each
  figure is the median of $RUNS runs (individual runs listed), the tools taking turns in each round;
  every capture goes into a new repository or image file, every restore to a new target file;
  the runs of one tool's command differed by as much as this: $(widest)

## The disks

Two raw disk images of $((DISK_SIZE >> 20)) MiB: GPT, one partition of $VOL_MIB MiB at 1 MiB, one ext4 (\`mkfs.ext4\`,
filled through a loop mount), one NTFS (\`mkntfs -Q\`, filled through \`ntfs-3g\`), holding the same
$FILES files, $(mib "$FILE_BYTES") MiB: sizes log-uniform between 4 KiB and 8 MiB; $(mib "$BIN_BYTES") MiB random bytes,
$(mib "$LOG_BYTES") MiB log-like text lines (zstd: about 3.4 : 1), $(mib "$B64_BYTES") MiB base64 of random bytes
(about 1.3 : 1); each file from its own random seed, so files share no content. The second
version of each disk has $CHANGED_FILES files ($(mib "$CHANGED_BYTES") MiB) rewritten with new content of the same
kind and size (the middle file of each hundredth of the files in size order). Disks $IMAGES_NOTE
(\`scripts/bench-images.sh\`).

cauldron reads a read-only loop device of the whole disk (\`losetup -r\`), partclone a read-only
loop device of the partition (\`losetup -r -o 1048576 --sizelimit $PART_SIZE\`): the same bytes, through
the same kind of block device. The disk is virtual, and the host caches it: data the host has not
read lately comes at a fraction of the speed (in trials before this run, a source image read
after a while came at 0.45–0.95 GB/s, read again at 2–4 GB/s), and which data the host still
holds is chance. So before every timed command its input (source image, repository or \`.zst\`
image) is read once, untimed, then the page cache is dropped: every tool and round starts cold
in this machine's page cache and, as far as the host allows, warm in the host's. The
"reference: \`cat\`" rows show the read rate of a source in that state; their spread shows
that the host does not always keep it. Encrypted repositories use a password (Argon2id key derivation
included in each command's time); \`cauldron init\` is not timed.

## partclone's progress wait

partclone's progress thread sleeps ${PC_WAIT} s between updates (its default refresh, \`-f ${PC_WAIT}\`), and
partclone waits for it to wake before it exits, so its times end just after a multiple of ${PC_WAIT} s:
cloning an empty 16 MiB ext4 (\`partclone.ext4 -c | zstd -T0 -3\`, synced) took $(printf '%.2f' "$(med pc_fixed.cap)") s (runs
$(runs pc_fixed.cap)), restoring it (\`zstd -dc | partclone.restore -O\`, synced) $(printf '%.2f' "$(med pc_fixed.res)") s (runs $(runs pc_fixed.res)).
Between 0 and ${PC_WAIT} s of every partclone figure below is this wait. A user of partclone waits for it
too, so the goals are judged on the full times; each Goals table also shows the ratios with the
whole ${PC_WAIT} s taken off partclone's time, the worst case for cauldron. (\`-f 0\` removes the wait
but makes the progress thread spin on a CPU; in a trial outside this run it was no faster.)

EOF
	fs_section ext4
	fs_section ntfs
	cat <<EOF
## Memory

Every cauldron command ran under \`/usr/bin/time -v\`; "peak RSS" is its "Maximum resident set
size", the largest over the runs. Largest per command kind, both filesystems:
$(for k in init ext4.cap_plain ntfs.cap_plain ext4.cap_enc ntfs.cap_enc ext4.cap_default ntfs.cap_default ext4.cap_better ntfs.cap_better ext4.inc ntfs.inc ext4.res_plain ntfs.res_plain ext4.res_enc ntfs.res_enc ext4.res_gen2 ntfs.res_gen2 generations; do
		printf -- '- %s: %s\n' "$(label "$k" | sed 's/^init$/init (encrypted: Argon2id, 64 MiB)/')" "$(rss_mib "$k")"
	done)

Memory-limited runs: a capture into a new encrypted repository and a restore from it, each
inside a new memory cgroup (${CG_KIND:-none was available}); the kernel charges
the page cache the command causes to the cgroup too, so the cgroup peak includes cache that it
reclaims under the limit. The goal is met when the command completes with no OOM kill.

- ext4 capture: ${V[ext4.cg_cap.cg]}
- ext4 restore: ${V[ext4.cg_res.cg]}
- NTFS capture: ${V[ntfs.cg_cap.cg]}
- NTFS restore: ${V[ntfs.cg_res.cg]}

## Correctness

$(for c in "${CHECKS[@]}"; do IFS='|' read -r f w r <<<"$c"; echo "- ${f/ntfs/NTFS}: $w: $r"; done)

## Reproducing

\`\`\`
make bench
\`\`\`

runs \`make deps build\`, then \`scripts/bench.sh\` (root; $(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", (b - a) / 60 + 0.5 }') min for this run,
plus a few minutes the first time to build them). \`BENCH_CACHE\` moves the disk cache,
\`BENCH_RUNS\` changes the number of runs and \`BENCH_VOL_MIB\` the partition size (both only for
trying the script out: the figures above are for the defaults).
EOF
} >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
# The offline registry benchmark appends its own section (issue 6).
BIN="$BIN" DOC="$DOC" "$ROOT/scripts/bench-hive.sh"
# Network restores and the server's memory under hostile load (issue 16): their own section.
BIN="$BIN" BENCH_DOC="$DOC" "$ROOT/scripts/bench-net.sh"
cat "$DOC"
[ "$CHECK_FAILED" = 0 ] || { echo "bench: a correctness check failed; the figures are void" >&2; exit 1; }

#!/usr/bin/env bash
# bench-index: peak memory of capture, restore-disk and verify of one small generation in a
# repository whose index lists BENCH_INDEX_BLOBS data blobs (default 40 million: 10 TiB of unique
# data at 256 KiB cells). The index is synthetic (internal/synthindex: index files listing packs
# that are not stored; no reader of the real generation needs them), the generation real: a
# 64 MiB disk with one ext4 partition. Peak RSS by /usr/bin/time -v; each command also checked
# (the restored disk equals the source; verify finds no damage).
# Replaces its own section of docs/benchmarks.md (between the bench-index markers), or appends it.
# Settings: BIN (bin/cauldron), OLD_BIN (a cauldron to measure beside it, e.g. one built from
# before the bounded index; its figures are listed too), BENCH_INDEX_BLOBS, DOC.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/bin/cauldron}
OLD_BIN=${OLD_BIN:-}
BLOBS=${BENCH_INDEX_BLOBS:-40000000}
DOC=${DOC:-$ROOT/docs/benchmarks.md}
GO=${GO:-go}
for t in sgdisk mkfs.ext4 /usr/bin/time cmp; do
	command -v "$t" >/dev/null || { echo "bench-index: $t missing; run make deps" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench-index: $BIN missing; run make build" >&2; exit 1; }

W=$(mktemp -d /var/tmp/cauldron-bench-index.XXXXXX)
trap 'rm -rf "$W"' EXIT
export CAULDRON_PASSWORD=bench-password-not-secret
say() { echo "bench-index: $*" >&2; }

"$GO" build -o "$W/synthindex" ./internal/synthindex

# The small disk: 64 MiB, GPT, one ext4 partition holding 40 MiB of random files.
mkdir -p "$W/files"
for i in $(seq 1 40); do head -c 1048576 /dev/urandom >"$W/files/f$i"; done
truncate -s 66M "$W/disk.img"
sgdisk -q -n1:1M:0 -t1:8300 "$W/disk.img" >/dev/null
mkfs.ext4 -q -F -E offset=1048576 -d "$W/files" "$W/disk.img" 64M

# peak LABEL CMD...: runs CMD under /usr/bin/time -v; prints "max-RSS-KiB wall-seconds".
peak() {
	local label=$1
	shift
	/usr/bin/time -v -o "$W/time.$label" "$@" >"$W/out.$label" 2>&1 || { cat "$W/out.$label" >&2; say "$label failed"; exit 1; }
	awk -F': ' '/Maximum resident/ { rss=$2 } /Elapsed \(wall/ { split($2, t, ":"); s = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2] } END { printf "%d %.1f\n", rss, s }' "$W/time.$label"
}

# One repository with one generation and the synthetic index, used by every binary measured.
REPO=$W/repo
"$BIN" init --repo "$REPO" >/dev/null
"$BIN" capture --repo "$REPO" --machine small "$W/disk.img" >/dev/null
say "writing a synthetic index of $BLOBS blobs"
"$W/synthindex" --repo "$REPO" --blobs "$BLOBS" >"$W/synth"
du -sb "$REPO/index" | cut -f1 >"$W/indexbytes"

# measure BIN NAME: the three commands, each a line "command KiB seconds" in $W/rows.NAME.
measure() {
	local bin=$1 name=$2
	# 4 KiB of the gap before the partition change: the capture stores one chunk and dedupes the
	# rest against the index.
	head -c 4096 /dev/urandom | dd of="$W/disk.img" bs=4096 seek=128 conv=notrunc status=none
	: >"$W/rows.$name"
	say "$name: capture"
	echo "capture $(peak cap-$name "$bin" capture --repo "$REPO" --machine small "$W/disk.img")" >>"$W/rows.$name"
	say "$name: restore-disk"
	echo "restore-disk $(peak res-$name "$bin" restore-disk --repo "$REPO" --machine small --disk disk0 --to "$W/back-$name.img" --yes)" >>"$W/rows.$name"
	cmp "$W/disk.img" "$W/back-$name.img" || { say "$name: the restored disk differs from the source"; exit 1; }
	rm -f "$W/back-$name.img"
	say "$name: verify"
	echo "verify $(peak ver-$name "$bin" verify --repo "$REPO" --machine small --generation latest)" >>"$W/rows.$name"
	grep -q "no damage found" "$W/out.ver-$name" || { cat "$W/out.ver-$name" >&2; say "$name: verify found damage"; exit 1; }
}

measure "$BIN" new
[ -z "$OLD_BIN" ] || measure "$OLD_BIN" old

table() {
	local name=$1
	echo "| command | peak RSS | wall time |"
	echo "|---|---|---|"
	while read -r cmd kib secs; do
		printf '| `cauldron %s` | %.0f MiB | %s s |\n' "$cmd" "$(echo "$kib / 1024" | bc -l)" "$secs"
	done <"$W/rows.$name"
}

section() {
	echo "<!-- bench-index start -->"
	echo "## Index memory at 10 TiB (\`scripts/bench-index.sh\`)"
	echo
	echo "Peak RSS (\`/usr/bin/time -v\`) of capture, restore and verify of one generation of a 64 MiB disk"
	echo "(40 MiB of files on ext4) in an encrypted repository whose index lists $BLOBS data blobs"
	echo "($(awk '{ printf "%.0f", $1 / 1048576 }' "$W/indexbytes") MiB of index files; $(sed 's/^synthindex: //' "$W/synth")):"
	echo "the size of a repository holding 10 TiB of unique data at 256 KiB cells. The index is"
	echo "synthetic (\`internal/synthindex\`: index files listing packs that are not stored), the"
	echo "generation real; the restored disk is compared with the source and verify must find no"
	echo "damage. Run $(date -u '+%Y-%m-%d %H:%M UTC') with \`$("$BIN" --version 2>&1 | head -n 1)\`."
	echo
	echo "Command: \`make bench-index\` (or \`BENCH_INDEX_BLOBS=$BLOBS scripts/bench-index.sh\`;"
	echo "\`OLD_BIN=path/to/older/cauldron\` measures another build beside it)."
	echo
	table new
	if [ -n "$OLD_BIN" ]; then
		echo
		echo "The same with \`$("$OLD_BIN" --version 2>&1 | head -n 1)\` (the whole index in a Go map):"
		echo
		table old
	fi
	echo
	echo "Prune and a verify of the whole repository (no \`--machine\`) still hold the whole index"
	echo "in memory, in proportion to the repository; they are not measured here."
	echo "<!-- bench-index end -->"
}

section >"$W/section.md"
if grep -q '<!-- bench-index start -->' "$DOC" 2>/dev/null; then
	awk -v f="$W/section.md" '/<!-- bench-index start -->/ { while ((getline l < f) > 0) print l; skip=1; next } /<!-- bench-index end -->/ { skip=0; next } !skip' "$DOC" >"$DOC.tmp"
	mv "$DOC.tmp" "$DOC"
else
	{ echo; cat "$W/section.md"; } >>"$DOC"
fi
cat "$W/section.md"

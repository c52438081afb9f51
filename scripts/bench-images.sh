#!/usr/bin/env bash
# Builds the benchmark's source disks (run by scripts/bench.sh; usable on its own):
#   bench-images.sh OUTDIR VOLUME_MIB
# OUTDIR/ext4-1.img, OUTDIR/ntfs-1.img: raw disks, GPT with one partition of VOLUME_MIB MiB at
#   1 MiB, formatted ext4 / NTFS and filled about half with the same files: sizes log-uniform
#   from 4 KiB to 8 MiB, half of the bytes random, half text (log-like lines and base64), every
#   file generated from its own /dev/urandom seed, so no two files share content.
# OUTDIR/ext4-2.img, OUTDIR/ntfs-2.img: the same disks after rewriting 1 % of the files (evenly
#   spread over the size order, so the sample spans all sizes) with new content of the same kind
#   and size.
# OUTDIR/info.env: counts and sizes for the report. OUTDIR/complete marks a finished build; the
# build happens in a sibling folder that is renamed at the end, so an interrupted build leaves
# no half-made cache.
set -euo pipefail
OUT=${1:?usage: bench-images.sh OUTDIR VOLUME_MIB}
VOL_MIB=${2:?usage: bench-images.sh OUTDIR VOLUME_MIB}
PART_OFF=$((1 << 20))
PART_SIZE=$((VOL_MIB << 20))
DISK_SIZE=$((PART_SIZE + (2 << 20))) # 1 MiB before the partition, 1 MiB after (backup GPT)
MIN_FILE=4096
MAX_FILE=$((8 << 20))
BUDGET=$((PART_SIZE / 2)) # bytes of file data: about half full

BUILD=$OUT.build.$$
LOOPS=()
MOUNTS=()
cleanup() {
	local m l
	for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	for l in ${LOOPS[@]+"${LOOPS[@]}"}; do losetup -d "$l" 2>/dev/null || true; done
	rm -rf "$BUILD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=loops.sh
. "$(dirname "${BASH_SOURCE[0]}")/loops.sh"
fs_mount() { # fs dev dir
	mkdir -p "$3"
	if [ "$1" = ext4 ]; then mount -t ext4 "$2" "$3"; else ntfs-3g "$2" "$3"; fi
	MOUNTS+=("$3")
}
fs_umount() {
	local keep=() m
	umount "$1"
	for m in "${MOUNTS[@]}"; do [ "$m" = "$1" ] || keep+=("$m"); done
	MOUNTS=(${keep[@]+"${keep[@]}"})
}

# A random seed below 2^31: mawk's srand clamps larger ones (every seed would be the same).
seed() { echo $(($(od -An -N4 -tu4 /dev/urandom) % 2147483647 + 1)); }

# Log-like text: timestamps, hosts, services, requests, random ids and a few words per line.
# zstd compresses it about 3.4 : 1 (not trivially, unlike zeros or one repeated line).
LOG_AWK='BEGIN {
  srand(seed)
  nl = split("INFO INFO INFO INFO DEBUG DEBUG WARN ERROR", lv, " ")
  ns = split("api auth billing cache db gateway mailer scheduler search storage worker", sv, " ")
  nm = split("GET GET GET POST POST PUT DELETE", mv, " ")
  np = split("users orders items sessions invoices reports files events", pv, " ")
  nw = split("request served handled completed retry timeout connection opened closed reset upstream latency slow query cache miss hit evicted token refreshed user login logout failed", wv, " ")
  nst = split("200 200 200 200 201 204 301 304 400 401 403 404 500 502 503", stv, " ")
  t = 1700000000 + int(rand() * 30000000)
  n = 0
  while (n < size) {
    t += rand() * 2
    msg = wv[1 + int(rand() * nw)] " " wv[1 + int(rand() * nw)] " " wv[1 + int(rand() * nw)]
    line = sprintf("%d.%03d host%02d %s[%d]: %s %s /v%d/%s/%d status=%s bytes=%d dur=%.2fms req=%08x%04x msg=\"%s\"\n",
      int(t), int(rand() * 1000), 1 + int(rand() * 24), sv[1 + int(rand() * ns)], 1000 + int(rand() * 30000),
      lv[1 + int(rand() * nl)], mv[1 + int(rand() * nm)], 1 + int(rand() * 3), pv[1 + int(rand() * np)],
      int(rand() * 100000), stv[1 + int(rand() * nst)], int(rand() * 65536), rand() * 250,
      int(rand() * 4294967296), int(rand() * 65536), msg)
    printf "%s", line
    n += length(line)
  }
}'

# make_file KIND SIZE PATH: new content of a kind (bin: random; log: log lines; b64: base64 of
# random bytes), exactly SIZE bytes.
make_file() {
	case $1 in
	bin) head -c "$2" /dev/urandom >"$3" ;;
	log) awk -v seed="$(seed)" -v size="$2" "$LOG_AWK" >"$3" ;;
	b64) head -c $(($2 * 3 / 4 + 3)) /dev/urandom | base64 -w 76 >"$3" ;;
	esac
	truncate -s "$2" "$3"
}

rm -rf "$BUILD"
mkdir -p "$BUILD/files" "$BUILD/changes"

# The file list: path, size, kind. Sizes log-uniform; each file goes to whichever half (random
# or text) has fewer bytes so far, so the bytes split about evenly; text alternates log/base64.
awk -v seed="$(seed)" -v budget="$BUDGET" -v lo="$MIN_FILE" -v hi="$MAX_FILE" 'BEGIN {
  srand(seed); total = 0; bin = 0; txt = 0; ntxt = 0
  for (i = 0; total < budget; i++) {
    size = int(exp(log(lo) + rand() * (log(hi) - log(lo))))
    if (total + size > budget) size = budget - total
    if (size < lo) break
    if (bin <= txt) { kind = "bin"; bin += size } else { kind = (ntxt++ % 2 ? "b64" : "log"); txt += size }
    printf "d%02d/f%05d.%s\t%d\t%s\n", i % 16, i, (kind == "bin" ? "bin" : "txt"), size, kind
    total += size
  }
}' >"$BUILD/files.tsv"
# The changed 1 %: in size order, the middle file of each of n equal slices, n = 1 % of the
# files: the same size quantiles (0.5 %, 1.5 %, …) every build, so about 1 % of the bytes too.
sort -t$'\t' -k2,2n -k1,1 "$BUILD/files.tsv" | awk '{ line[NR] = $0 } END {
  n = int(NR / 100 + 0.5); if (n < 1) n = 1
  for (k = 0; k < n; k++) print line[int((k + 0.5) * NR / n) + 1]
}' >"$BUILD/changes.tsv"

echo "generating $(wc -l <"$BUILD/files.tsv") files ($((BUDGET >> 20)) MiB)"
while IFS=$'\t' read -r path size kind; do
	mkdir -p "$BUILD/files/$(dirname "$path")" "$BUILD/changes/$(dirname "$path")"
	make_file "$kind" "$size" "$BUILD/files/$path"
done <"$BUILD/files.tsv"
while IFS=$'\t' read -r path size kind; do
	make_file "$kind" "$size" "$BUILD/changes/$path"
done <"$BUILD/changes.tsv"

for fs in ext4 ntfs; do
	echo "building $fs disk"
	img=$BUILD/$fs-1.img
	truncate -s "$DISK_SIZE" "$img"
	type=8300
	[ "$fs" = ntfs ] && type=0700
	sgdisk -n1:$((PART_OFF / 512)):$(((PART_OFF + PART_SIZE) / 512 - 1)) -t1:$type -c1:bench "$img" >/dev/null
	# The partition must be exactly where and as big as the rest of the benchmark assumes.
	got=$(sfdisk -d "$img" | awk -F'[=,]' '/start=/ { gsub(/ /, ""); printf "%.0f %.0f\n", $2 * 512, $4 * 512 }')
	[ "$got" = "$PART_OFF $PART_SIZE" ] || { echo "unexpected partition: $got" >&2; exit 1; }
	loop_attach dev -o "$PART_OFF" --sizelimit "$PART_SIZE" "$img"
	if [ "$fs" = ext4 ]; then
		# No lazy init: nothing is left for the kernel to zero in the background after mounting.
		mkfs.ext4 -q -F -L bench -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
	else
		mkntfs -Q -F -q -L bench -p $((PART_OFF / 512)) -H 255 -S 63 "$dev"
	fi
	fs_mount "$fs" "$dev" "$BUILD/mnt"
	cp -r "$BUILD/files/." "$BUILD/mnt/"
	fs_umount "$BUILD/mnt"
	loop_detach "$dev"

	img2=$BUILD/$fs-2.img
	cp --sparse=always "$img" "$img2"
	loop_attach dev -o "$PART_OFF" --sizelimit "$PART_SIZE" "$img2"
	fs_mount "$fs" "$dev" "$BUILD/mnt"
	while IFS=$'\t' read -r path _ _; do
		cp "$BUILD/changes/$path" "$BUILD/mnt/$path" # rewrites the file in place (truncate, write)
	done <"$BUILD/changes.tsv"
	fs_umount "$BUILD/mnt"
	loop_detach "$dev"
	sync "$img" "$img2"
done

sum() { awk -F'\t' -v k="${2:-}" 'k == "" || $3 == k { s += $2 } END { printf "%.0f\n", s }' "$1"; }
cat >"$BUILD/info.env" <<EOF
VOL_MIB=$VOL_MIB
PART_OFF=$PART_OFF
PART_SIZE=$PART_SIZE
DISK_SIZE=$DISK_SIZE
FILES=$(wc -l <"$BUILD/files.tsv")
FILE_BYTES=$(sum "$BUILD/files.tsv")
BIN_BYTES=$(sum "$BUILD/files.tsv" bin)
LOG_BYTES=$(sum "$BUILD/files.tsv" log)
B64_BYTES=$(sum "$BUILD/files.tsv" b64)
CHANGED_FILES=$(wc -l <"$BUILD/changes.tsv")
CHANGED_BYTES=$(sum "$BUILD/changes.tsv")
BUILT="$(date -u '+%Y-%m-%d %H:%M UTC')"
EOF
rm -rf "$BUILD/files" "$BUILD/changes" "$BUILD/mnt"
touch "$BUILD/complete"
rm -rf "$OUT"
mv "$BUILD" "$OUT"

#!/usr/bin/env bash
# The archive demo (until the full recovery demo exists): build a sample disk (GPT, an ext4 and a
# FAT32 partition with files), capture it, change some files, capture again, restore the second
# generation onto a fresh image and prove it identical: fsck-clean, same table, same files.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin/cauldron}
WORK=$(mktemp -d /tmp/cauldron-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '\n== %s\n' "$*"; }
t0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

DISK=$WORK/source.img
say "building a sample disk: GPT, ext4 (192 MiB) and FAT32 (96 MiB) with files"
truncate -s 320M "$DISK"
sgdisk -n1:1M:+192M -t1:8300 -c1:root -n2:0:+96M -t2:0700 -c2:data "$DISK" >/dev/null
EXT_OFF=$((1024*1024)); FAT_OFF=$(( (1+192)*1024*1024 ))
mkdir -p "$WORK/files/etc" "$WORK/files/var/log" "$WORK/files/blobs"
for i in $(seq 1 40); do base64 -w 100 < <(head -c $((20000 + i*3000)) /dev/urandom) > "$WORK/files/var/log/log$i.txt"; done
for i in $(seq 1 30); do head -c $((100000 + i*40000)) /dev/urandom > "$WORK/files/blobs/blob$i.bin"; done
echo "demo-host" > "$WORK/files/etc/hostname"
mkfs.ext4 -q -F -L root -E offset=$EXT_OFF -d "$WORK/files" "$DISK" 192M
mkfs.vfat -F 32 -s 2 -n DATA --offset $((FAT_OFF/512)) "$DISK" $((96*1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
FAT="$DISK@@$FAT_OFF"
mmd -i "$FAT" ::/docs ::/pics
for i in $(seq 1 25); do base64 < <(head -c $((30000 + i*1000)) /dev/urandom) > "$WORK/doc$i.txt"; mcopy -i "$FAT" "$WORK/doc$i.txt" ::/docs/; done
for i in $(seq 1 10); do head -c $((200000 + i*10000)) /dev/urandom > "$WORK/pic$i.jpg"; mcopy -i "$FAT" "$WORK/pic$i.jpg" ::/pics/; done
"$BIN" layout show "$DISK"

REPO=$WORK/repo
say "cauldron init (encrypted with a password from CAULDRON_PASSWORD)"
export CAULDRON_PASSWORD=demo-password
"$BIN" init --repo "$REPO"

say "capture 1"
"$BIN" capture --repo "$REPO" --machine demo "$DISK"

say "changing files: rewriting 3 logs and a blob on ext4, 2 documents on FAT32, adding a file"
for i in 1 2 3; do base64 -w 100 < <(head -c 30000 /dev/urandom) > "$WORK/new$i.txt"; done
# debugfs edits a copy of the partition, which then goes back in place.
dd if="$DISK" of="$WORK/ext.img" bs=1M skip=1 count=192 status=none
for i in 1 2 3; do debugfs -w -R "rm /var/log/log$i.txt" "$WORK/ext.img" >/dev/null 2>&1; debugfs -w -R "write $WORK/new$i.txt /var/log/log$i.txt" "$WORK/ext.img" >/dev/null 2>&1; done
head -c 150000 /dev/urandom > "$WORK/newblob.bin"
debugfs -w -R "rm /blobs/blob7.bin" "$WORK/ext.img" >/dev/null 2>&1
debugfs -w -R "write $WORK/newblob.bin /blobs/blob7.bin" "$WORK/ext.img" >/dev/null 2>&1
echo "generation two" > "$WORK/marker"
debugfs -w -R "write $WORK/marker /etc/marker" "$WORK/ext.img" >/dev/null 2>&1
dd if="$WORK/ext.img" of="$DISK" bs=1M seek=1 conv=notrunc status=none
for i in 4 5; do base64 < <(head -c 12345 /dev/urandom) > "$WORK/doc$i.txt"; mcopy -o -i "$FAT" "$WORK/doc$i.txt" ::/docs/; done

say "capture 2"
"$BIN" capture --repo "$REPO" --machine demo "$DISK"
"$BIN" generations --repo "$REPO"

say "restore generation 2 onto a fresh image"
OUT=$WORK/restored.img
"$BIN" restore-disk --repo "$REPO" --machine demo --generation latest --disk disk0 --to "$OUT"

say "proof"
"$BIN" verify --repo "$REPO" --read-data
sgdisk -v "$OUT" | grep -q 'No problems found' && echo "sgdisk -v: no problems"
table() { sfdisk --dump "$1" | sed "s|^$1||" | grep -v '^device:'; }
diff <(table "$DISK") <(table "$OUT") && echo "partition table (sfdisk --dump): identical, disk GUID included"
dd if="$OUT" of="$WORK/ext.out" bs=1M skip=1 count=192 status=none
dd if="$DISK" of="$WORK/ext.src" bs=1M skip=1 count=192 status=none
e2fsck -fn "$WORK/ext.out" >/dev/null && echo "e2fsck -fn: clean"
dd if="$OUT" of="$WORK/fat.out" bs=1M skip=193 count=96 status=none
fsck.vfat -n "$WORK/fat.out" >/dev/null && echo "fsck.vfat -n: clean"
mkdir -p "$WORK/a" "$WORK/b"
(cd "$WORK/a" && debugfs -R "rdump / ." "$WORK/ext.src" >/dev/null 2>&1; mcopy -s -i "$FAT" ::/docs ::/pics .)
(cd "$WORK/b" && debugfs -R "rdump / ." "$WORK/ext.out" >/dev/null 2>&1; mcopy -s -i "$WORK/fat.out" ::/docs ::/pics .)
ha=$(cd "$WORK/a" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum)
hb=$(cd "$WORK/b" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum)
n=$(cd "$WORK/b" && find . -type f ! -path './lost+found/*' | wc -l)
[ "$ha" = "$hb" ] && echo "files: all $n identical (sha256), marker: $(cat "$WORK/b/etc/marker")"
[ "$ha" = "$hb" ] || { echo "FILES DIFFER"; exit 1; }
say "demo done in $(since "$t0")"

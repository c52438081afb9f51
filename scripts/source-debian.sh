#!/usr/bin/env bash
# The demo's source machine: a raw disk image of a real Debian 12 installed with debootstrap, as it
# would be on a virtual machine whose only disk controller is virtio-blk. It boots with GRUB for
# BIOS from an MBR disk with one ext4 root partition (fstab and the kernel command line name it by
# UUID), shows a login prompt on the serial console (ttyS0), and its initramfs carries only the
# drivers of its own hardware: on any other controller (NVMe, AHCI) it cannot find its root. That
# is what inoculation must repair.
#
# The image is built once and cached in CAULDRON_DEMO_CACHE (/var/tmp/cauldron-demo) under the
# script's VERSION; change VERSION whenever the image it builds changes. The image's path is
# printed on stdout (progress goes to stderr), so callers do IMG=$(scripts/source-debian.sh).
#   --rebuild     build even if the cached image exists
#   --path        print the path the image has (or would have) and exit
#   --offline     use the cached image only; fail if there is none (the tests: they never reach
#                 a mirror, `make prefetch` builds the image beforehand)
# The Debian mirror is the one this machine's apt uses (the URIs: line of
# /etc/apt/sources.list.d/debian.sources, else /etc/apt/sources.list); CAULDRON_DEBIAN_MIRROR
# overrides it. Needs root, debootstrap, sfdisk, partx, mkfs.ext4, and about 1 GiB of disk.
#
# What the image holds (the Go tests in inoculate/linux rely on it; keep them in step):
#   root password cauldron, hostname cauldron-source, /root/cauldron-marker with MARKER_TEXT,
#   /etc/initramfs-tools/initramfs.conf MODULES=dep, an initramfs with virtio_pci, virtio_blk and
#   ext4 and no other storage driver, GRUB on the serial console with console=ttyS0,115200n8.
set -euo pipefail

VERSION=1
CACHE=${CAULDRON_DEMO_CACHE:-/var/tmp/cauldron-demo}
IMG=$CACHE/source-debian-v$VERSION.img
SIZE=2G
SUITE=bookworm
HOSTNAME_=cauldron-source
ROOT_PASSWORD=cauldron
MARKER_TEXT="cauldron demo source machine, image v$VERSION"
# The source machine's own storage stack: its controller's driver, the root filesystem's, and the
# checksum module ext4 asks for by soft dependency (modprobe resolves the hard ones: virtio,
# virtio_ring, jbd2, mbcache, crc16).
SOURCE_MODULES=(virtio_pci virtio_blk ext4 crc32c_generic)
PACKAGES=linux-image-amd64,grub-pc,initramfs-tools,systemd-sysv,udev,kmod,e2fsprogs,login,passwd

log() { printf 'source-debian: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

rebuild=false
offline=false
case "${1:-}" in
"") ;;
--rebuild) rebuild=true ;;
--path) echo "$IMG"; exit 0 ;;
--offline) offline=true ;;
*) die "unknown argument ${1} (use --rebuild, --path or --offline)" ;;
esac

[ "$(id -u)" = 0 ] || die "needs root (loop devices, mounts, chroot)"
for tool in debootstrap sfdisk partx losetup mkfs.ext4 blkid chroot flock; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap fdisk util-linux e2fsprogs)"
done

mkdir -p "$CACHE"
# One builder at a time: a test and the demo may ask for the image at once; the second waits and
# then finds it cached.
exec 9>"$CACHE/.source-debian.lock"
flock 9

if [ -f "$IMG" ] && ! $rebuild; then
	log "cached: $IMG"
	echo "$IMG"
	exit 0
fi
$offline && die "$IMG is not built and --offline reaches no mirror: run make prefetch (or $0) first"

# mirror prints the Debian mirror this machine's apt uses for $SUITE.
mirror() {
	if [ -n "${CAULDRON_DEBIAN_MIRROR:-}" ]; then
		echo "$CAULDRON_DEBIAN_MIRROR"
		return
	fi
	local m=""
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		# deb822 stanzas are separated by blank lines: take the URIs of the first stanza whose
		# Suites name $SUITE itself (not bookworm-security or bookworm-updates).
		m=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
			{
				ok = 0; uri = ""
				for (i = 1; i <= NF; i++) {
					n = split($i, w, /[ \t]+/)
					if (w[1] == "Suites:") for (j = 2; j <= n; j++) if (w[j] == suite) ok = 1
					if (w[1] == "URIs:") uri = w[2]
				}
				if (ok && uri != "") { print uri; exit }
			}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
		m=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)
	fi
	[ -n "$m" ] || die "no $SUITE mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list (set CAULDRON_DEBIAN_MIRROR)"
	echo "$m"
}

MIRROR=$(mirror)
WORK=$(mktemp -d /tmp/cauldron-source-debian.XXXXXX)
ROOT=$WORK/root
PARTIAL=$IMG.partial
LOOP=""
MOUNTS=()

cleanup() {
	local rc=$? i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
	done
	if [ -n "$LOOP" ]; then
		partx -d "$LOOP" 2>/dev/null || true
		losetup -d "$LOOP" 2>/dev/null || true
	fi
	rm -rf "$WORK"
	if [ $rc -ne 0 ]; then
		rm -f "$PARTIAL"
		log "failed (exit $rc); nothing cached"
	fi
}
trap cleanup EXIT

domount() { # domount MOUNTPOINT MOUNT-ARGS...: mounts and remembers it for cleanup
	local mp=$1
	shift
	mount "$@" "$mp"
	MOUNTS+=("$mp")
}
doumount() { # doumount MOUNTPOINT: unmounts the last remembered mount, which must be MOUNTPOINT
	local last=$((${#MOUNTS[@]} - 1))
	[ "${MOUNTS[$last]}" = "$1" ] || die "internal: unmounting $1 but the last mount is ${MOUNTS[$last]}"
	umount "$1"
	unset "MOUNTS[$last]"
}

t0=$SECONDS
log "building $IMG (Debian $SUITE from $MIRROR)"
rm -f "$PARTIAL"
truncate -s "$SIZE" "$PARTIAL"
# One primary Linux partition from 1 MiB to the end, marked active: the 1 MiB gap before it is
# where grub-install embeds core.img, and some BIOSes boot only a disk with an active partition.
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$PARTIAL"

LOOP=$(losetup --find --show "$PARTIAL")
# The host kernel parses no partition tables (../shared/notes/platform.md): partx adds the
# partition through BLKPG.
# A loop device that was detached without partx -d keeps its old partitions in the kernel:
# remove whatever is there before adding this image's.
partx -d "$LOOP" 2>/dev/null || true
partx -a "$LOOP"
PART=${LOOP}p1
for _ in $(seq 50); do [ -b "$PART" ] && break; sleep 0.1; done
[ -b "$PART" ] || die "$PART did not appear after partx -a $LOOP"

mkfs.ext4 -q -L debian-root "$PART"
UUID=$(blkid -s UUID -o value "$PART")
[ -n "$UUID" ] || die "blkid found no UUID on $PART"
mkdir -p "$ROOT"
domount "$ROOT" "$PART"

log "debootstrap (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
	{ tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (its last lines above)"; }
log "debootstrap done after $((SECONDS - t0)) s"

# A private /dev for the chroot instead of the host's: the host has no udev, so there is no
# /dev/disk/by-uuid, and without it grub-mkconfig writes root=/dev/loopNp1 instead of root=UUID=.
# Building the links in a tmpfs of our own keeps the host's /dev untouched.
chroot_up() {
	domount "$ROOT/dev" -t tmpfs -o mode=0755,size=1m cauldron-dev
	cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$LOOP" "$PART" "$ROOT/dev/"
	mkdir -p "$ROOT/dev/disk/by-uuid" "$ROOT/dev/pts" "$ROOT/dev/shm"
	ln -s "../../$(basename "$PART")" "$ROOT/dev/disk/by-uuid/$UUID"
	domount "$ROOT/proc" -t proc proc
	domount "$ROOT/sys" -t sysfs sysfs
	domount "$ROOT/run" -t tmpfs -o mode=0755 cauldron-run
}
chroot_down() {
	doumount "$ROOT/run"
	doumount "$ROOT/sys"
	doumount "$ROOT/proc"
	doumount "$ROOT/dev"
}
in_root() { LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$ROOT" "$@"; }

log "configuring"
cat >"$ROOT/etc/fstab" <<EOF
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$UUID / ext4 errors=remount-ro 0 1
EOF
echo "$HOSTNAME_" >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOSTNAME_
::1		localhost ip6-localhost ip6-loopback
EOF
echo "$MARKER_TEXT" >"$ROOT/root/cauldron-marker"
echo "root:$ROOT_PASSWORD" | in_root chpasswd

# GRUB and the kernel talk to the first serial port, which QEMU's -nographic / -serial stdio shows;
# systemd starts a getty there because console=ttyS0 is on the command line.
sed -i \
	-e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
	-e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
	-e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"/' \
	"$ROOT/etc/default/grub"
cat >>"$ROOT/etc/default/grub" <<'EOF'
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
EOF

# The initramfs. On its own virtio machine, initramfs-tools' MODULES=dep would put exactly the
# drivers of the hardware the root lives on into the initramfs — virtio_pci, virtio_blk and ext4 —
# and that is the source machine this demo needs. But MODULES=dep looks at the hardware of the
# machine running mkinitramfs, and here that is the build host (a loop device on another
# controller), not the virtio machine the image is for. So the initramfs is built once with
# MODULES=list and exactly the source's own storage stack, from a conf.d drop-in and a modules
# file that are removed afterwards, and the system's configuration says MODULES=dep, as the
# installed system's would. The result is what dep gives on the source hardware, and a later
# update-initramfs on the source machine itself would make the same.
sed -i 's/^MODULES=.*/MODULES=dep/' "$ROOT/etc/initramfs-tools/initramfs.conf"
grep -qx 'MODULES=dep' "$ROOT/etc/initramfs-tools/initramfs.conf" || die "MODULES= not found in initramfs.conf"
cp -a "$ROOT/etc/initramfs-tools/modules" "$WORK/modules.orig"
printf '%s\n' "${SOURCE_MODULES[@]}" >>"$ROOT/etc/initramfs-tools/modules"
echo 'MODULES=list' >"$ROOT/etc/initramfs-tools/conf.d/zz-source-build"

chroot_up
log "update-initramfs (MODULES=list: ${SOURCE_MODULES[*]})"
in_root update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 ||
	{ cat "$WORK/initramfs.log" >&2; die "update-initramfs failed in the chroot"; }
rm "$ROOT/etc/initramfs-tools/conf.d/zz-source-build"
cp -a "$WORK/modules.orig" "$ROOT/etc/initramfs-tools/modules"

log "grub-install --target=i386-pc $LOOP, update-grub"
in_root grub-install --target=i386-pc --modules='part_msdos ext2' "$LOOP" >"$WORK/grub.log" 2>&1 ||
	{ cat "$WORK/grub.log" >&2; die "grub-install failed in the chroot"; }
in_root update-grub >>"$WORK/grub.log" 2>&1 ||
	{ cat "$WORK/grub.log" >&2; die "update-grub failed in the chroot"; }
grep -q "root=UUID=$UUID" "$ROOT/boot/grub/grub.cfg" || die "grub.cfg does not boot root=UUID=$UUID"
in_root apt-get clean

# Prove what the initramfs holds before caching it (with the image's own lsinitramfs: the host need
# not have initramfs-tools): the source's drivers and no other controller's.
for initrd in "$ROOT"/boot/initrd.img-*; do
	list=$(in_root lsinitramfs "/boot/${initrd##*/}") || die "lsinitramfs ${initrd##*/} failed"
	grep -q '/virtio_blk\.ko' <<<"$list" || die "${initrd##*/} lacks virtio_blk"
	other=$(grep -E '/(nvme|nvme-core|ahci|libahci|ata_piix|sd_mod|virtio_scsi)\.ko' <<<"$list" || true)
	[ -z "$other" ] || die "${initrd##*/} holds another controller's driver: $(tr '\n' ' ' <<<"$other")"
done
chroot_down

sync
doumount "$ROOT"
e2fsck -fn "$PART" >/dev/null 2>&1 || die "e2fsck -fn $PART is not clean"
partx -d "$LOOP"
losetup -d "$LOOP"
LOOP=""
mv "$PARTIAL" "$IMG"
# Older versions are of no use to anyone once this one exists.
for old in "$CACHE"/source-debian-v*.img; do
	[ "$old" = "$IMG" ] || rm -f "$old"
done
log "built in $((SECONDS - t0)) s: $IMG ($(du -h "$IMG" | cut -f1) used of $SIZE)"
echo "$IMG"

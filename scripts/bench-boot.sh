#!/usr/bin/env bash
# bench-boot: the boot environment's figures (issue 4, "Performance"), run by `make bench-boot`.
#   - build time of the media with a cold cache (a fresh --cache: every .deb downloaded, u-root
#     built) and with that cache warm;
#   - the size of the ISO (goal: 64 MB at most), of the kernel and initramfs, and of the cauldron
#     binary the image starts (stripped, as make build links it);
#   - for each boot path (BIOS/UEFI/Secure Boot CD, USB stick on BIOS/UEFI, PXE over TFTP/HTTP),
#     RUNS boots under TCG, one at a time, through the boot tests in initramfs/media_qemu_test.go,
#     reading the guest's uptime from the recovery program's "cauldron: ready uptime=…s" line
#     (goal: 5 s at most) and the wall time from starting QEMU to that line.
# The figures replace the text between <!-- bench-boot:start --> and <!-- bench-boot:end --> in
# docs/benchmarks.md (the markers are added at the end if missing; other sections are left alone).
#
# Environment: RUNS (boots per path, default 3), BUSES (controllers with a disk, default
# sata,nvme,virtio), BOOT_PATHS (comma-separated subset of the test's
# boot paths), COLD=0 to skip the cold-cache build (its line then says so), KEEP=1 to keep the
# work folder (printed), DOC to write another file than docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
# The controllers each benchmark VM has a disk on: a typical machine's. The boot tests attach
# every controller the harness knows; LSI 53C895A's driver alone waits 3 s after its bus reset.
BUSES=${BUSES:-sata,nvme,virtio}
# The guest CPU under TCG: QEMU's default, qemu64, as the tests use. It has no RDRAND, so the
# guest kernel's random pool is ready only after about a second of jitter sampling; nothing before
# "ready" may wait for it (TestStartWaitsForNoRandomness). One extra row boots BIOS CD on the
# other kind of CPU for comparison: with RDRAND (qemu64,+rdrand) when CPU is QEMU's default,
# else on the default.
CPU=${CPU-}
if [ -n "$CPU" ]; then OTHER_CPU="" OTHER_DESC="QEMU's default CPU, qemu64, which lacks RDRAND"; else OTHER_CPU="qemu64,+rdrand" OTHER_DESC="qemu64 with RDRAND (-cpu qemu64,+rdrand)"; fi
COLD=${COLD:-1}
DOC=${DOC:-docs/benchmarks.md}
GO=${GO:-go}

WORK=$(mktemp -d /var/tmp/cauldron-bench-boot.XXXXXX)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "== building a static cauldron and cauldron-media (as make build does: without symbols and debug info)"
CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w -buildid=" -o "$WORK/cauldron" ./cmd/cauldron
CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w -buildid=" -o "$WORK/cauldron-media" ./cmd/cauldron-media

cold_s="not measured (COLD=0)"
if [ "$COLD" = 1 ]; then
	echo "== cauldron-media, cold cache ($WORK/cache)"
	t0=$(secs)
	"$WORK/cauldron-media" --out "$WORK/cold" --cache "$WORK/cache" --cauldron "$WORK/cauldron" >"$WORK/cold.out" 2>"$WORK/cold.log" ||
		{ cat "$WORK/cold.log" >&2; exit 1; }
	cold_s="$(elapsed "$t0" "$(secs)") s"
	warm_cache=$WORK/cache
else
	warm_cache=${CAULDRON_CACHE:-/var/tmp/cauldron-cache}
	echo "== warming $warm_cache"
	"$WORK/cauldron-media" --out "$WORK/prewarm" --cache "$warm_cache" --cauldron "$WORK/cauldron" >/dev/null 2>"$WORK/prewarm.log" ||
		{ cat "$WORK/prewarm.log" >&2; exit 1; }
fi
echo "== cauldron-media, warm cache"
t0=$(secs)
"$WORK/cauldron-media" --out "$WORK/media" --cache "$warm_cache" --cauldron "$WORK/cauldron" >"$WORK/warm.out" 2>"$WORK/warm.log" ||
	{ cat "$WORK/warm.log" >&2; exit 1; }
warm_s="$(elapsed "$t0" "$(secs)") s"
rm -rf "$WORK/cold" "$WORK/prewarm"

size() { stat -c %s "$1"; }
iso=$(size "$WORK/media/cauldron.iso")
kernel=$(size "$WORK/media/vmlinuz")
initrd=$(size "$WORK/media/initrd.img")
cauldron=$(size "$WORK/cauldron")
fmt_size() { awk -v n="$1" 'BEGIN { printf "%.1f MB (%.1f MiB)", n / 1e6, n / 1048576 }'; }
iso_goal=$(awk -v n="$iso" 'BEGIN { print (n <= 64e6 ? "met" : "**missed**") }')
echo "ISO $(fmt_size "$iso") — goal ≤ 64 MB $iso_goal; cold $cold_s, warm $warm_s"

echo "== booting each path $RUNS times under TCG (one VM at a time)"
load=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(secs)
set +e
CAULDRON_MEDIA="$WORK/media" CAULDRON_BOOT_RUNS="$RUNS" CAULDRON_BOOT_PARALLEL=1 \
	CAULDRON_BOOT_PATHS="${BOOT_PATHS:-}" CAULDRON_BOOT_BUSES="$BUSES" CAULDRON_QEMU_KVM= CAULDRON_QEMU_CPU="$CPU" \
	$GO test -count=1 -timeout 120m -run '^TestMediaBoot$' -v ./initramfs/ >"$WORK/boot.log" 2>&1
rc=$?
othercpu="not measured"
echo "== bios-cd on $OTHER_DESC, $RUNS times"
CAULDRON_MEDIA="$WORK/media" CAULDRON_BOOT_RUNS="$RUNS" CAULDRON_BOOT_PARALLEL=1 \
	CAULDRON_BOOT_PATHS=bios-cd CAULDRON_BOOT_BUSES="$BUSES" CAULDRON_QEMU_KVM= CAULDRON_QEMU_CPU="$OTHER_CPU" \
	$GO test -count=1 -timeout 60m -run '^TestMediaBoot$' -v ./initramfs/ >"$WORK/othercpu.log" 2>&1
othercpu=$(grep -a -o 'BOOT path=[^ ]* run=[0-9]* wall=[0-9.]*s uptime=[0-9.]*s' "$WORK/othercpu.log" | awk '
	{ split($5, u, "="); sub(/s$/, "", u[2]); v[++n] = u[2] + 0 }
	END {
		if (n == 0) { print "not measured (no boot reached ready)"; exit }
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		printf "%.2f s median of %d (%.2f–%.2f s)", (n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2), n, v[1], v[n]
	}')
echo "bios-cd on $OTHER_DESC: $othercpu"
set -e
boot_s=$(elapsed "$t0" "$(secs)")
grep -a -o 'BOOT path=[^ ]* run=[0-9]* wall=[0-9.]*s uptime=[0-9.]*s' "$WORK/boot.log" >"$WORK/boots" || true
if [ ! -s "$WORK/boots" ]; then
	tail -50 "$WORK/boot.log" >&2
	echo "bench-boot: no boot reached the ready line" >&2
	exit 1
fi
failed=$(grep -a -o -- '--- FAIL: TestMediaBoot/[^ ]*' "$WORK/boot.log" | sed 's|.*/||' | sort -u | tr '\n' ' ' || true)
# What the checks said, one line per kind of problem: missing disks grouped by controller, any
# other message as it is (without the per-run disk listing).
problems=$(grep -a -E '^\s+media_qemu_test.go:[0-9]+: ' "$WORK/boot.log" | grep -a -v 'BOOT path=' |
	sed -E 's/^\s+media_qemu_test.go:[0-9]+: //; s/; listed: .*//' | awk '
	match($0, /^[^:]+: no disk with serial [^ ]+ \(bus [^)]+\)/) {
		path = $0; sub(/:.*/, "", path)
		bus = $0; sub(/.*\(bus /, "", bus); sub(/\).*/, "", bus)
		if (!((bus, path) in seen)) { seen[bus, path] = 1; paths[bus] = paths[bus] (paths[bus] == "" ? "" : ", ") path }
		if (!(bus in order)) { order[bus] = ++nb; byorder[nb] = bus }
		next
	}
	!($0 in other) { other[$0] = 1; others[++no] = $0 }
	END {
		for (i = 1; i <= nb; i++) printf "no disk on the %s controller listed at ready: %s\n", byorder[i], paths[byorder[i]]
		for (i = 1; i <= no && i <= 10; i++) print others[i]
	}' || true)

# One table row per path: runs, median / min / max of the guest uptime, median wall time.
table=$(awk '
	{
		split($2, p, "="); split($4, w, "="); split($5, u, "=")
		path = p[2]; sub(/s$/, "", w[2]); sub(/s$/, "", u[2])
		if (!(path in n)) order[++paths] = path
		n[path]++; up[path, n[path]] = u[2] + 0; wall[path, n[path]] = w[2] + 0
	}
	function median(a, path, k,    i, j, t, v) {
		for (i = 1; i <= k; i++) v[i] = a[path, i]
		for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		return k % 2 ? v[(k+1)/2] : (v[k/2] + v[k/2+1]) / 2
	}
	END {
		for (i = 1; i <= paths; i++) {
			path = order[i]; k = n[path]; lo = hi = up[path, 1]
			for (j = 2; j <= k; j++) { if (up[path, j] < lo) lo = up[path, j]; if (up[path, j] > hi) hi = up[path, j] }
			m = median(up, path, k)
			printf "| %s | %d | %.2f s | %.2f–%.2f s | %.1f s | %s |\n", path, k, m, lo, hi, median(wall, path, k), (m <= 5 ? "met" : "**missed**")
		}
	}' "$WORK/boots")
# Rows in the order the test defines its boot paths.
order=$(grep -o '{name: "[^"]*"' initramfs/media_qemu_test.go | sed 's/.*"\(.*\)"/\1/')
table=$(for p in $order; do printf '%s\n' "$table" | grep -F "| $p |" || true; done)
echo "$table"

# wizard TEST LOG: the wizard's first screen, RUNS times, from the WIZARD lines of TEST.
wizard() {
	set +e
	CAULDRON_MEDIA="$WORK/media" CAULDRON_QEMU_KVM= CAULDRON_QEMU_CPU="$CPU" $GO test -count="$RUNS" -timeout 60m -run "^$1\$" -v ./initramfs/ >"$WORK/$2" 2>&1
	local rc=$?
	set -e
	grep -a -o 'WIZARD ready=[0-9.]*s first-screen-after=[0-9.]*s' "$WORK/$2" | awk '
	{ split($2, r, "="); split($3, f, "="); sub(/s$/, "", r[2]); sub(/s$/, "", f[2]); v[++n] = r[2] + f[2] }
	END {
		if (n == 0) { print "not measured (the test did not reach the first screen)"; exit }
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		m = n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
		printf "%.2f s median of %d (%.2f–%.2f s) — goal ≤ 5 s %s", m, n, v[1], v[n], (m <= 5 ? "met" : "**missed**")
	}'
	[ "$rc" = 0 ] || echo " ($1 failed: see its log)"
}
echo "== the wizard's first screen, $RUNS times each (BIOS CD; one disk only, then with a USB stick holding an archive)"
wizard_plain=$(wizard TestWizardFirstScreen wizard-plain.log | tr -d '\n')
echo "wizard first screen, one disk: $wizard_plain"
wizard=$(wizard TestWizardOnSerial wizard.log | tr -d '\n')
echo "wizard first screen, with a USB stick: $wizard"

cpu_desc="-cpu $CPU"
[ -n "$CPU" ] || cpu_desc="QEMU's default CPU, qemu64"
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
qemu_v=$(qemu-system-x86_64 --version | head -1 | sed 's/QEMU emulator version //')
section=$(
	cat <<EOF
<!-- bench-boot:start -->
## Boot environment (\`make bench-boot\`)

Produced by \`RUNS=$RUNS${BOOT_PATHS:+ BOOT_PATHS=$BOOT_PATHS} scripts/bench-boot.sh\` at $rev on $(date -u +%Y-%m-%d) — $(nproc) cores
(load average $load at the start of the boots), QEMU $qemu_v, TCG (no KVM), kernel $(sed -n 's/^kernel .*(\([^,]*\),.*/\1/p' "$WORK/warm.out").

| media | figure | goal |
|---|---|---|
| cauldron-media, cold cache (every .deb downloaded, u-root built; Go's build cache warm) | $cold_s | |
| cauldron-media, warm cache | $warm_s | |
| ISO | $(fmt_size "$iso") | ≤ 64 MB: $iso_goal |
| kernel / initramfs | $(fmt_size "$kernel") / $(fmt_size "$initrd") | |
| cauldron, /bin/cauldron in the image (\`make build\`: static, stripped) | $(fmt_size "$cauldron") | |

Each boot: 1 GiB RAM, 1 vCPU ($cpu_desc), a virtio-net NIC and one disk on each of these controllers: $BUSES
(a typical machine's; the boot tests in make test attach a disk to every controller the harness
knows, and there LSI 53C895A's sym53c8xx alone adds the 3 s it waits after resetting its bus,
which puts every path at about 9–10 s). BIOS boots on
QEMU's pc machine, UEFI on q35. Uptime is the guest's own clock (\`cauldron: ready uptime=\`); wall
is from starting QEMU to that line, firmware and boot loader included. The Secure Boot path picks
GRUB's "verbose kernel messages" entry (so the kernel's "Secure boot enabled" reaches the console
for the test to see); the others boot the default entry. All boots took ${boot_s} s.

| boot path | runs | guest uptime at ready, median | min–max | wall, median | goal ≤ 5 s |
|---|---|---|---|---|---|
$table

The same BIOS CD boot on $OTHER_DESC: $othercpu. (Without RDRAND the guest kernel's random
pool is ready only after about a second of jitter sampling; the boot waits for it nowhere before
"ready" since rs/xid, which read crypto/rand as the recovery program started, was replaced.)

The wizard's first screen on the serial console (issue 8; BIOS CD boot; guest uptime at ready
plus the wall time from ready to the screen, as the guest's clock follows the host's under TCG):
with one virtio disk and nothing else, $wizard_plain; with a USB stick holding an archive as
well, which the boot environment first looks at for a cauldron.ks and mounts for the wizard,
$wizard.
$(if [ "$rc" != 0 ]; then
		echo
		echo "The boot tests' checks failed for: ${failed:-(see the log)}— the figures above are still"
		echo "the guests' own. What the tests reported:"
		echo
		echo "$problems" | sed 's/^/- /'
	fi)
<!-- bench-boot:end -->
EOF
)

touch "$DOC"
if ! grep -q '<!-- bench-boot:start -->' "$DOC" || ! grep -q '<!-- bench-boot:end -->' "$DOC"; then
	printf '\n<!-- bench-boot:start -->\n<!-- bench-boot:end -->\n' >>"$DOC"
fi
SECTION="$section" awk '
	/<!-- bench-boot:start -->/ { print ENVIRON["SECTION"]; skip = 1; next }
	/<!-- bench-boot:end -->/ { skip = 0; next }
	!skip { print }' "$DOC" >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
echo "== wrote the bench-boot section of $DOC"

# Cauldron — every target installs what it needs (Debian 12, as root).
SHELL := /bin/bash
GO ?= go
BIN := bin/cauldron
# The image builder is a binary of its own: cauldron, which the boot image carries, links none of
# it (u-root's gobusybox and mkuimage, golang.org/x/tools, mvdan.cc/sh).
MEDIA_BIN := bin/cauldron-media
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Tools the tests and the demo use as independent judges and yardsticks.
APT_PACKAGES := e2fsprogs dosfstools ntfs-3g partclone gdisk fdisk mtools zstd util-linux mount time jq \
	xfsprogs btrfs-progs exfatprogs cryptsetup-bin lvm2 xorriso grub-pc-bin syslinux-common isolinux \
	libhivex-bin libwin-hivex-perl chntpw xz-utils \
	pxelinux shim-signed grub-efi-amd64-signed grub-efi-amd64-bin cpio kmod \
	efibootmgr kexec-tools dmsetup qemu-system-x86 ovmf ipxe-qemu debootstrap tmux samba strace iproute2 squashfs-tools
CAULDRON_CORPUS ?= $(abspath ../shared/corpus)
export CAULDRON_CORPUS
FUZZTIME ?= 30s

.PHONY: all build deps prefetch test demo bench bench-index bench-net bench-boot fuzz vet clean media

all: build

build: $(BIN) $(MEDIA_BIN)

GO_SOURCES := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum

$(BIN): $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -buildid= -X main.version=$(VERSION)" -o $(BIN) ./cmd/cauldron

$(MEDIA_BIN): $(GO_SOURCES)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -buildid= -X main.version=$(VERSION)" -o $(MEDIA_BIN) ./cmd/cauldron-media

# deps installs the Debian packages that are missing and downloads the pinned Go modules.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(GO) mod download

# prefetch fills the caches the tests take from, so that `go test` reaches no mirror: the demo's
# source machine (debootstrap, /var/tmp/cauldron-demo) and what an offline cauldron-media needs (kernel
# and firmware packages, apt lists, the u-root busybox: /var/tmp/cauldron-cache). Both are instant
# when the caches are full; the tests fail, naming this target, when they are not.
prefetch: deps
	@if [ "$$(id -u)" = 0 ]; then ./scripts/source-debian.sh >/dev/null; \
	else echo "note: not root: the demo's source machine is not built (the tests that boot it need root anyway)"; fi
	CGO_ENABLED=0 $(GO) run ./cmd/cauldron-media --prefetch

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) -C internal/xid vet ./...

# LOOPBACK_ONLY runs a command in a network namespace of its own whose only interface is loopback
# (as root, where the kernel allows it; otherwise as it is, saying so): the tests may talk to
# 127.0.0.1 and inside QEMU's user-mode network, and anything reaching further fails instead of
# quietly depending on the internet.
LOOPBACK_ONLY = $(shell if unshare --net -- sh -c 'ip link set lo up' 2>/dev/null; then \
	echo "unshare --net -- sh -c 'ip link set lo up && exec \"\$$0\" \"\$$@\"'"; \
	else echo "echo 'note: no loopback-only network namespace here (unshare --net or ip refused; not root?): the tests run with the host network' >&2;"; fi)

# test runs every test, with only loopback (the caches `make prefetch` filled stand in for the
# mirrors); CAULDRON_CORPUS makes corpus-backed tests fail instead of skip.
test: prefetch vet
	$(LOOPBACK_ONLY) $(GO) test -count=1 -timeout 25m ./...
	$(LOOPBACK_ONLY) $(GO) -C internal/xid test -count=1 ./...

# demo is the whole product on emulated machines (demo/main.go); it needs root.
demo: deps
	$(GO) run ./demo

bench: deps build
	./scripts/bench.sh
	./scripts/bench-index.sh

# bench-index measures capture, restore and verify of one generation in a repository whose index
# lists 40 million blobs (its section of docs/benchmarks.md; part of make bench).
bench-index: deps build
	./scripts/bench-index.sh

# bench-net measures restores through cauldron serve (HTTP, HTTPS) and S3 against a local one,
# and the server's memory under hostile load (its section of docs/benchmarks.md); make bench
# runs it too.
bench-net: deps build
	./scripts/bench-net.sh

# bench-boot measures the boot media: ISO size, guest uptime until the recovery is ready per boot
# path under TCG, build time (its section of docs/benchmarks.md).
bench-boot: deps build
	./scripts/bench-boot.sh

# fuzz runs every Go fuzz target for FUZZTIME each.
fuzz: deps
	@set -e; for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
			echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# media builds the boot media (ISO, kernel, initramfs, pxe/) into MEDIA_OUT with bin/cauldron as
# the program the image starts; the kernel package and the u-root build are cached in
# /var/tmp/cauldron-cache.
MEDIA_OUT ?= bin/media
media: deps build
	./$(MEDIA_BIN) --out $(MEDIA_OUT) --cauldron $(BIN)

clean:
	rm -rf bin

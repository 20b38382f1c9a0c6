#!/usr/bin/env bash
# Prepares a Debian 12 host to build, run and test ferrovs. Idempotent: run it as often as you like.
#
#   scripts/setup.sh [--hugepages N] [--no-install] [--with-ovs] [--with-qemu]
#
# - installs the Debian packages ferrovs builds against (DPDK 22.11, libclang for bindgen, pkg-config);
# - reserves N 2 MiB hugepages (default 1024, or $FERROVS_HUGEPAGES) and mounts hugetlbfs at /dev/hugepages;
# - with --with-ovs / --with-qemu also installs Open vSwitch with DPDK (the reference switch) / QEMU,
#   busybox-static, jq and the package lists scripts/vm-test.sh needs to fetch its guest kernel.
# Every step says what it did, or why it could not; the script exits non-zero only when the host cannot
# build or run ferrovs.
set -euo pipefail

hugepages=${FERROVS_HUGEPAGES:-1024}
install=1
with_qemu=0
extra_pkgs=()

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --hugepages) [ $# -ge 2 ] || { echo "setup: --hugepages needs a number" >&2; exit 2; }; hugepages=$2; shift 2 ;;
    --hugepages=*) hugepages=${1#*=}; shift ;;
    --no-install) install=0; shift ;;
    --with-ovs) extra_pkgs+=(openvswitch-switch-dpdk openvswitch-common); shift ;;
    --with-qemu) extra_pkgs+=(qemu-system-x86 busybox-static jq); with_qemu=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$hugepages" in ''|*[!0-9]*) echo "setup: --hugepages must be a whole number, got '$hugepages'" >&2; exit 2 ;; esac

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages and reserve hugepages)"

# --- packages -------------------------------------------------------------------------------------
pkgs=(dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev gcc libc6-dev "${extra_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "packages: all present (${pkgs[*]})"
elif [ "$install" -eq 0 ]; then
  die "packages missing and --no-install given: ${missing[*]}"
else
  say "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons must never be started by the package scripts (we start OVS by hand, by PID).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    say "packages: added /usr/sbin/policy-rc.d so no service starts on install"
  fi
  apt-get update -qq || die "apt-get update failed: check the package mirror in /etc/apt/sources.list*"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
  say "packages: installed ${missing[*]}"
fi
pkg-config --exists libdpdk || die "pkg-config cannot find libdpdk even after installing libdpdk-dev"
say "dpdk: $(pkg-config --modversion libdpdk) ($(pkg-config --variable=prefix libdpdk))"

# --- VM test guest ----------------------------------------------------------------------------------
# scripts/vm-test.sh builds its guest from a Debian kernel package fetched with `apt-get download`:
# that needs package lists that know it (a fresh machine may have none; vm-test.sh itself runs
# apt-get update if its download fails on lists gone stale).
if [ "$with_qemu" = 1 ]; then
  if apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    say "qemu: $(qemu-system-x86_64 --version | head -1); guest kernel package known to apt"
  elif [ "$install" -eq 0 ]; then
    die "apt does not know linux-image-cloud-amd64 (the VM test's guest kernel) and --no-install given"
  else
    apt-get update -qq || die "apt-get update failed: check the package mirror in /etc/apt/sources.list*"
    apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 \
      || die "apt does not know linux-image-cloud-amd64 even after apt-get update"
    say "qemu: $(qemu-system-x86_64 --version | head -1); package lists updated for the guest kernel"
  fi
fi

# --- Rust toolchain ---------------------------------------------------------------------------------
if command -v cargo >/dev/null 2>&1; then
  say "rust: $(cargo --version)"
else
  die "cargo not found: install the Rust toolchain with rustup (https://rustup.rs), then rerun me"
fi

# --- hugepages --------------------------------------------------------------------------------------
nr=/proc/sys/vm/nr_hugepages
have=$(cat "$nr")
if [ "$have" -ge "$hugepages" ]; then
  say "hugepages: $have x 2 MiB reserved (wanted $hugepages)"
else
  if echo "$hugepages" > "$nr" 2>/dev/null; then :; fi
  have=$(cat "$nr")
  if [ "$have" -ge "$hugepages" ]; then
    say "hugepages: reserved $have x 2 MiB"
  elif [ "$have" -gt 0 ]; then
    say "hugepages: warning: asked for $hugepages, the kernel gave $have (memory is fragmented or short); ferrovs may run out"
  else
    die "hugepages: the kernel reserved none (writing $nr failed or memory is short)"
  fi
fi
if mountpoint -q /dev/hugepages 2>/dev/null || grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts; then
  say "hugetlbfs: mounted at /dev/hugepages"
else
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages || die "hugetlbfs: mount at /dev/hugepages failed"
  say "hugetlbfs: mounted at /dev/hugepages"
fi
say "hugepages free: $(awk '/HugePages_Free/ {print $2}' /proc/meminfo) of $(awk '/HugePages_Total/ {print $2}' /proc/meminfo)"
say "ready"

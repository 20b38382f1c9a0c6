#!/usr/bin/env bash
# Binds a PCI network card to vfio-pci so that ferrovs (DPDK) can drive it, or gives it back to its
# kernel driver. A thin, careful wrapper around DPDK's dpdk-devbind.py.
#
#   scripts/bind-nic.sh status                 list network devices and their drivers
#   scripts/bind-nic.sh bind 0000:01:00.0      unbind from the kernel, bind to vfio-pci
#   scripts/bind-nic.sh unbind 0000:01:00.0 [DRIVER]
#                                              give it back to DRIVER (default: the kernel driver
#                                              dpdk-devbind reports as unused, e.g. ixgbe, i40e)
# Then use the address as a port's devargs: devargs = "0000:01:00.0"  (and drop "--no-pci").
set -euo pipefail

die() { printf 'bind-nic: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'bind-nic: %s\n' "$*"; }
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[ $# -ge 1 ] || usage
cmd=$1
devbind=$(command -v dpdk-devbind.py || true)
[ -n "$devbind" ] || die "dpdk-devbind.py not found: run scripts/setup.sh (it installs the dpdk package)"

if [ "$cmd" = status ]; then
  exec "$devbind" --status-dev net
fi
[ "$cmd" = bind ] || [ "$cmd" = unbind ] || usage
[ $# -ge 2 ] || usage
[ "$(id -u)" -eq 0 ] || die "run me as root"

addr=$2
# Accept the short form (01:00.0) like DPDK does.
if [[ "$addr" =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then addr="0000:$addr"; fi
[[ "$addr" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] \
  || die "'$2' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:01:00.0)"
dev=/sys/bus/pci/devices/$addr
[ -d "$dev" ] || die "no PCI device at $addr (see: scripts/bind-nic.sh status)"
class=$(cat "$dev/class")
[[ "$class" == 0x02* ]] || die "$addr is not a network device (PCI class $class)"
current=$(basename "$(readlink -f "$dev/driver" 2>/dev/null)" 2>/dev/null || echo none)

if [ "$cmd" = bind ]; then
  if [ "$current" = vfio-pci ]; then say "$addr is already bound to vfio-pci"; exit 0; fi
  for netdir in "$dev"/net/* "$dev"/virtio*/net/*; do
    [ -e "$netdir" ] || continue
    ifname=$(basename "$netdir")
    if ip -o route show dev "$ifname" 2>/dev/null | grep -q . || ip -o addr show dev "$ifname" scope global 2>/dev/null | grep -q .; then
      die "$addr is kernel interface $ifname, which has addresses or routes (maybe your SSH session): refusing to take it"
    fi
  done
  if [ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
    if [ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode 2>/dev/null)" != Y ]; then
      die "no IOMMU groups: enable the IOMMU (intel_iommu=on or amd_iommu=on on the kernel command line), or, on a VM without one, run: modprobe vfio enable_unsafe_noiommu_mode=1"
    fi
    say "warning: no IOMMU, using vfio's unsafe no-IOMMU mode"
  fi
  modprobe vfio-pci || die "cannot load the vfio-pci module"
  "$devbind" --bind=vfio-pci "$addr" || die "dpdk-devbind.py could not bind $addr (see its message above)"
  say "$addr: $current -> vfio-pci"
else
  driver=${3:-}
  if [ -z "$driver" ]; then
    driver=$("$devbind" --status-dev net | grep "^$addr" | sed -n 's/.*unused=\([^ ,]*\).*/\1/p')
    [ -n "$driver" ] && [ "$driver" != vfio-pci ] || die "cannot tell $addr's kernel driver: give it, e.g. scripts/bind-nic.sh unbind $addr ixgbe"
  fi
  "$devbind" --bind="$driver" "$addr" || die "dpdk-devbind.py could not bind $addr to $driver"
  say "$addr: $current -> $driver"
fi

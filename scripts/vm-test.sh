#!/usr/bin/env bash
# Two QEMU guests talk to each other through ferrovs over vhost-user: guest 1 pings guest 2, then
# sends it a bulk TCP stream and receives one back (busybox nc); ferrovs has two vhost-user ports
# and no rules, so it is a learning switch (NORMAL). Prints PASS/FAIL lines; exits 0 only if all pass.
#
#   scripts/vm-test.sh [--kvm|--no-kvm] [--vhost-mode client|server] [--mem auto|hugepages|memfd]
#                      [--release] [--mib N] [--pings N] [--timeout SECS] [--rebuild-guest]
#                      [--config-syntax auto|vhost|devargs]
#
#   --kvm / --no-kvm   accelerator (default: KVM only if /dev/kvm works and boots the guest, else TCG)
#   --vhost-mode M     ferrovs's side of the sockets: client (default: QEMU listens, ferrovs connects)
#                      or server (ferrovs listens, QEMU connects with reconnect=1)
#   --mem M            guest RAM shared with the switch: hugepages (memory-backend-file on
#                      /dev/hugepages), memfd, or auto (default: hugepages if enough are free)
#   --release          build and run target/release/ferrovs (default: the debug build that
#                      `cargo test` makes; FERROVS_BIN=PATH runs that binary and builds nothing)
#   --mib N            MiB of the TCP stream in each direction (default 8, at most 64)
#   --pings N          pings timed after the first reply (default 5)
#   --timeout SECS     for the guests' whole run (default 120)
#   --rebuild-guest    rebuild the guest even if it is cached
#   --config-syntax S  the ports as `vhost = { path, mode, queues }` or as raw net_vhost devargs
#                      (default auto: vhost, or devargs if this ferrovs does not know vhost yet)
#
# The guest (a Debian cloud kernel and a busybox initramfs, both from Debian packages fetched with
# apt-get download) is built once into ${FERROVS_VM_DIR:-/var/tmp/ferrovs-vm}/guest; the last run's
# logs, config and stats are kept in .../run. Needs root, hugepages or memfd, qemu-system-x86,
# busybox-static and jq (scripts/setup.sh --with-qemu installs them). Exits 77 if QEMU cannot run.
# Everything it starts is stopped by PID on exit; sockets and DPDK runtime files it made are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

accel=auto
vhost_mode=client
mem=auto
profile=debug
mib=8
pings=5
timeout_secs=120
rebuild=0
config_syntax=auto
vm_dir=${FERROVS_VM_DIR:-/var/tmp/ferrovs-vm}
qemu=${QEMU:-qemu-system-x86_64}
guest_ram_mib=256
kernel_pkg=linux-image-cloud-amd64

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }
need_arg() { [ "$2" -ge 2 ] || { echo "vm-test: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --kvm) accel=kvm; shift ;;
    --no-kvm) accel=tcg; shift ;;
    --vhost-mode) need_arg "$1" $#; vhost_mode=$2; shift 2 ;;
    --mem) need_arg "$1" $#; mem=$2; shift 2 ;;
    --release) profile=release; shift ;;
    --mib) need_arg "$1" $#; mib=$2; shift 2 ;;
    --pings) need_arg "$1" $#; pings=$2; shift 2 ;;
    --timeout) need_arg "$1" $#; timeout_secs=$2; shift 2 ;;
    --rebuild-guest) rebuild=1; shift ;;
    --config-syntax) need_arg "$1" $#; config_syntax=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "vm-test: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$vhost_mode" in client|server) ;; *) echo "vm-test: --vhost-mode is client or server" >&2; exit 2 ;; esac
case "$mem" in auto|hugepages|memfd) ;; *) echo "vm-test: --mem is auto, hugepages or memfd" >&2; exit 2 ;; esac
case "$config_syntax" in auto|vhost|devargs) ;; *) echo "vm-test: --config-syntax is auto, vhost or devargs" >&2; exit 2 ;; esac
for v in "$mib" "$pings" "$timeout_secs"; do
  case "$v" in ''|*[!0-9]*|0) echo "vm-test: --mib, --pings and --timeout take a positive whole number" >&2; exit 2 ;; esac
done
# Each guest holds its stream and the one it receives in RAM (initramfs).
[ "$mib" -le 64 ] || { echo "vm-test: --mib is at most 64 (the guests keep both streams in ${guest_ram_mib} MiB of RAM)" >&2; exit 2; }

t_start=$(date +%s.%N)
elapsed() { awk -v a="$(date +%s.%N)" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }'; }
say() { printf 'vm-test [%5ss] %s\n' "$(elapsed)" "$*"; }
die() { printf 'vm-test: FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'vm-test: SKIP: %s\n' "$*" >&2; exit 77; }

[ "$(id -u)" -eq 0 ] || die "run me as root (QEMU on hugepages, DPDK)"
command -v "$qemu" >/dev/null 2>&1 || skip "$qemu not found (scripts/setup.sh --with-qemu installs it)"
# Can QEMU start a machine at all? (It reads "quit" from its monitor and exits.)
echo quit | timeout 20 "$qemu" -accel tcg -machine q35 -nodefaults -display none -S -monitor stdio \
  >/dev/null 2>&1 || skip "$qemu cannot start a q35 machine under TCG on this host"
command -v jq >/dev/null 2>&1 || die "jq not found (scripts/setup.sh --with-qemu installs it)"

mkdir -p "$vm_dir"
exec 9>"$vm_dir/lock"
flock -w 600 9 || die "another vm-test holds $vm_dir/lock"
guest_dir=$vm_dir/guest
run_dir=$vm_dir/run
sock1=$run_dir/vm1.sock
sock2=$run_dir/vm2.sock
[ ${#sock1} -le 107 ] || die "socket path $sock1 is longer than 107 bytes: set FERROVS_VM_DIR shorter"
prefix=ferrovs-vm$$   # ferrovs's EAL --file-prefix
build_tmp=
ferrovs_pid=
declare -A qemu_pid=()

stop_pid() { # PID SIGNAL WAIT_SECS: signal, wait, then SIGKILL
  local pid=$1 sig=$2 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < $3 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid ignored SIG$sig for $3 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${qemu_pid[@]}"; do stop_pid "$p" TERM 5; done
  [ -n "$ferrovs_pid" ] && stop_pid "$ferrovs_pid" INT 20
  rm -f "$sock1" "$sock2"
  rm -rf "/var/run/dpdk/$prefix"
  rm -f /dev/hugepages/"$prefix"* 2>/dev/null || true
  [ -z "$build_tmp" ] || rm -rf "$build_tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ================================================================================================
# The guest: a Debian cloud kernel and an initramfs of busybox-static, the virtio-net modules
# and this /init. Parameters come from the kernel command line (fvs.*); results go to the serial
# console as lines starting with "FVS ", which the host reads.
# ================================================================================================
read -r -d '' guest_init <<'EOF' || true
#!/bin/sh
# /init of the ferrovs VM-test guest, generated by scripts/vm-test.sh.
#   fvs.role=client|server|probe  fvs.ip=ADDR/LEN  fvs.peer=ADDR  fvs.pings=N  fvs.mib=N
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "FVS $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
param() {
  for w in $(cat /proc/cmdline); do
    case "$w" in "fvs.$1="*) echo "${w#*=}" ;; esac
  done
}
finish() { say "done at $(up) s"; sync; poweroff -f; }
ROLE=$(param role); IP=$(param ip); PEER=$(param peer); PINGS=$(param pings); MIB=$(param mib)
say "boot $ROLE at $(up) s, kernel $(uname -r)"
[ "$ROLE" = probe ] && finish

for m in $(cat /lib/fvs/order); do insmod "/lib/fvs/$m.ko" || say "fail insmod $m"; done
i=0
while [ ! -e /sys/class/net/eth0 ]; do
  i=$((i + 1)); [ $i -le 100 ] || { say "fail no eth0 after 10 s"; finish; }
  sleep 0.1
done
ip link set lo up
ip addr add "$IP" dev eth0
ip link set eth0 up
say "net eth0 $(cat /sys/class/net/eth0/address) $IP at $(up) s"

# The stream: random bytes, so the receiver's MD5 proves they arrived intact.
dd if=/dev/urandom of=/tmp/blob bs=64k count=$((MIB * 16)) 2>/dev/null
BLOB_MD5=$(md5sum /tmp/blob | cut -d' ' -f1)
BLOB_BYTES=$(wc -c < /tmp/blob)
# A receiving nc's stdin: a FIFO we hold open both ways never reads EOF, so nc does not half-close
# its side early; it exits when the sender closes.
mkfifo /tmp/hold
exec 3<>/tmp/hold

# connect PORT send|recv FILE: retries until the peer listens; prints the seconds of the good try.
connect() {
  n=0
  while :; do
    t0=$(up)
    if [ "$2" = send ]; then
      timeout 60 nc "$PEER" "$1" <"$3" >/dev/null && break
    else
      timeout 60 nc "$PEER" "$1" <&3 >"$3" && [ -s "$3" ] && break
    fi
    n=$((n + 1)); [ $n -lt 100 ] || return 1
    sleep 0.2
  done
  awk -v a="$(up)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }'
}

case "$ROLE" in
client)
  n=0
  give_up=$(($(cut -d. -f1 /proc/uptime) + 60))
  until ping -c 1 -W 1 "$PEER" >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$(cut -d. -f1 /proc/uptime)" -lt "$give_up" ] || { say "fail ping: no reply from $PEER in 60 s ($n tries)"; finish; }
    sleep 0.1
  done
  say "first ping reply at $(up) s after $n lost"
  ping -c "$PINGS" -i 0.2 -W 2 "$PEER" > /tmp/ping.out 2>&1
  sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
  recv=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
  rtt=$(sed -n 's/^round-trip min\/avg\/max = \([0-9.\/]*\) ms.*/\1/p' /tmp/ping.out)
  say "ping sent=${sent:-0} received=${recv:-0} rtt_min_avg_max_ms=${rtt:-none}"
  if secs=$(connect 5001 send /tmp/blob); then
    say "tcp-send port=5001 bytes=$BLOB_BYTES md5=$BLOB_MD5 secs=$secs"
  else
    say "fail tcp-send: cannot connect to $PEER:5001"
  fi
  if secs=$(connect 5002 recv /tmp/recv); then
    say "tcp-recv port=5002 bytes=$(wc -c < /tmp/recv) md5=$(md5sum /tmp/recv | cut -d' ' -f1) secs=$secs"
  else
    say "fail tcp-recv: cannot connect to $PEER:5002"
  fi
  finish ;;
server)
  timeout 100 nc -l -p 5001 <&3 >/tmp/recv
  say "tcp-recv port=5001 bytes=$(wc -c < /tmp/recv) md5=$(md5sum /tmp/recv | cut -d' ' -f1)"
  t0=$(up)
  timeout 100 nc -l -p 5002 </tmp/blob >/dev/null
  say "tcp-send port=5002 bytes=$BLOB_BYTES md5=$BLOB_MD5 secs=$(awk -v a="$(up)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"
  finish ;;
*)
  say "fail unknown role '$ROLE'"; finish ;;
esac
EOF
guest_modules="virtio_pci virtio_net"
guest_stamp=$(printf '%s\n' "$guest_init" "$guest_modules" "$kernel_pkg" | sha256sum | cut -c1-16)

build_guest() {
  local tmp kimg deb kver stage order
  busybox=/bin/busybox
  if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
    die "busybox-static is not installed (scripts/setup.sh --with-qemu installs it)"
  fi
  tmp=$(mktemp -d "$vm_dir/build.XXXXXX")
  build_tmp=$tmp   # removed by cleanup, whatever happens
  chmod 755 "$tmp"   # apt-get download drops root and writes as _apt
  kimg=$(apt-cache depends "$kernel_pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$kimg" ] || ! (cd "$tmp" && apt-get download -q "$kimg" >/dev/null 2>&1); then
    say "guest: package lists look stale; apt-get update"
    apt-get update -qq || die "apt-get update failed"
    kimg=$(apt-cache depends "$kernel_pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$kimg" ] || die "apt cannot resolve $kernel_pkg to a kernel image package"
    (cd "$tmp" && apt-get download -q "$kimg" >/dev/null) || die "apt-get download $kimg failed"
  fi
  deb=$(ls "$tmp"/*.deb)
  dpkg-deb -x "$deb" "$tmp/kernel"
  kver=$(ls "$tmp/kernel/lib/modules")
  [ -f "$tmp/kernel/boot/vmlinuz-$kver" ] || die "$kimg has no /boot/vmlinuz-$kver"

  stage=$tmp/initramfs
  mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/fvs}
  cp "$busybox" "$stage/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
  done
  printf '%s\n' "$guest_init" > "$stage/init"
  chmod 755 "$stage/init"
  # The virtio-net modules and what they depend on (modinfo reads the .ko), dependencies first.
  order=()
  add_module() {
    local name=$1 file dep
    case " ${order[*]} " in *" $name "*) return ;; esac
    file=$(find "$tmp/kernel/lib/modules/$kver" -name "$name.ko*" | head -1)
    if [ -z "$file" ]; then
      grep -q "/$name.ko" "$tmp/kernel/lib/modules/$kver/modules.builtin" 2>/dev/null && return
      die "module $name is neither in $kimg nor built in"
    fi
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add_module "$dep"; done
    case "$file" in
      *.ko) cp "$file" "$stage/lib/fvs/$name.ko" ;;
      *.ko.xz) xz -dc "$file" > "$stage/lib/fvs/$name.ko" ;;
      *.ko.zst) zstd -qdc "$file" > "$stage/lib/fvs/$name.ko" ;;
      *) die "cannot unpack module $file" ;;
    esac
    order+=("$name")
  }
  for m in $guest_modules; do add_module "$m"; done
  printf '%s\n' "${order[@]}" > "$stage/lib/fvs/order"

  mkdir -p "$tmp/out"
  cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
  (cd "$stage" && find . | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -6 > "$tmp/out/initramfs.gz"
  printf '%s\n' "$guest_stamp" > "$tmp/out/stamp"
  printf 'kernel %s (%s), modules: %s, busybox %s\n' "$kimg" "$kver" "${order[*]}" \
    "$(dpkg-query -W -f='${Version}' busybox-static)" > "$tmp/out/ABOUT"
  rm -rf "$guest_dir"
  mv "$tmp/out" "$guest_dir"
  rm -rf "$tmp"
}

if [ "$rebuild" = 1 ] || [ ! -f "$guest_dir/vmlinuz" ] || [ ! -f "$guest_dir/initramfs.gz" ] \
   || [ "$(cat "$guest_dir/stamp" 2>/dev/null)" != "$guest_stamp" ]; then
  say "guest: building in $guest_dir"
  build_guest
  say "guest: built: $(cat "$guest_dir/ABOUT")"
else
  say "guest: cached: $(cat "$guest_dir/ABOUT")"
fi

# ================================================================================================
# Run directory, cleanup, accelerator, memory
# ================================================================================================
rm -rf "$run_dir"
mkdir -p "$run_dir"

kvm_works() { # boots the guest once with KVM in the probe role
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  timeout 20 "$qemu" -enable-kvm -cpu host -machine q35 -m 128M -nodefaults -nographic -no-reboot \
    -serial "file:$run_dir/kvm-probe.console" -kernel "$guest_dir/vmlinuz" \
    -initrd "$guest_dir/initramfs.gz" -append "console=ttyS0 quiet panic=-1 fvs.role=probe" \
    >"$run_dir/kvm-probe.log" 2>&1 </dev/null || return 1
  grep -aq '^FVS done' "$run_dir/kvm-probe.console"
}
case "$accel" in
  auto)
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && kvm_works; then
      accel=kvm
    else
      accel=tcg
    fi ;;
  kvm) kvm_works || die "--kvm: a KVM guest does not boot here (see $run_dir/kvm-probe.log)" ;;
esac
if [ "$accel" = kvm ]; then accel_args=(-enable-kvm -cpu host); else accel_args=(-accel tcg); fi

guest_pages=$((2 * guest_ram_mib / 2))
if [ "$mem" = auto ]; then
  free_pages=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
  # Leave room for ferrovs's own hugepage memory (--in-memory) besides the guests'.
  if grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts && [ "$(awk '/Hugepagesize/ { print $2 }' /proc/meminfo)" = 2048 ] \
     && [ "${free_pages:-0}" -ge $((guest_pages + 256)) ]; then
    mem=hugepages
  else
    mem=memfd
  fi
fi
if [ "$mem" = hugepages ]; then
  grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts || die "--mem hugepages: /dev/hugepages is not a hugetlbfs mount"
  mem_object="memory-backend-file,id=mem,size=${guest_ram_mib}M,mem-path=/dev/hugepages,share=on"
else
  mem_object="memory-backend-memfd,id=mem,size=${guest_ram_mib}M,share=on"
fi

# ================================================================================================
# ferrovs
# ================================================================================================
if [ -n "${FERROVS_BIN:-}" ]; then
  ferrovs=$FERROVS_BIN
  [ -x "$ferrovs" ] || die "FERROVS_BIN=$ferrovs is not executable"
else
  say "ferrovs: cargo build ($profile)"
  if [ "$profile" = release ]; then cargo_args=(--release); else cargo_args=(); fi
  cargo build --quiet --bin ferrovs "${cargo_args[@]}" || die "cargo build failed"
  ferrovs=${CARGO_TARGET_DIR:-$root/target}/$profile/ferrovs
fi

write_config() { # SYNTAX: vhost | devargs
  local mode_client
  [ "$vhost_mode" = client ] && mode_client=1 || mode_client=0
  {
    printf '# written by scripts/vm-test.sh: two vhost-user ports, no rules (NORMAL)\n'
    printf '[eal]\nargs = ["--no-pci", "--in-memory", "--file-prefix=%s"]\n\n' "$prefix"
    printf '[datapath]\npmd_cores = [1]\ncontrol_core = 0\n'
    local i sock
    for i in 1 2; do
      [ $i = 1 ] && sock=$sock1 || sock=$sock2
      printf '\n[[port]]\nname = "vm%s"\n' "$i"
      if [ "$1" = vhost ]; then
        printf 'vhost = { path = "%s", mode = "%s", queues = 1 }\n' "$sock" "$vhost_mode"
      elif [ $mode_client = 1 ]; then
        printf 'devargs = "net_vhost%s,iface=%s,client=1"\n' "$((i - 1))" "$sock"
      else
        printf 'devargs = "net_vhost%s,iface=%s"\n' "$((i - 1))" "$sock"
      fi
    done
  } > "$run_dir/ferrovs.toml"
}
# The [[port]] vhost = {...} table is the documented form; a ferrovs that predates it gets the
# same ports as raw net_vhost devargs.
ports_as() { # SYNTAX: how the config names the ports, for the log
  if [ "$1" = vhost ]; then
    echo "vhost = { path, mode = \"$vhost_mode\", queues = 1 }"
  else
    echo "devargs = \"net_vhostN,iface=PATH$([ "$vhost_mode" = client ] && echo ,client=1)\""
  fi
}
syntax=$config_syntax
[ "$syntax" = auto ] && syntax=vhost
write_config "$syntax"
if ! "$ferrovs" check --config "$run_dir/ferrovs.toml" >"$run_dir/check.log" 2>&1; then
  [ "$config_syntax" = auto ] || die "ferrovs check rejects $run_dir/ferrovs.toml: $(cat "$run_dir/check.log")"
  say "ferrovs: this build rejects 'vhost = {...}' ($(head -1 "$run_dir/check.log")); using devargs"
  cp "$run_dir/ferrovs.toml" "$run_dir/ferrovs-vhost-syntax.toml"
  syntax=devargs
  write_config devargs
  "$ferrovs" check --config "$run_dir/ferrovs.toml" >"$run_dir/check.log" 2>&1 \
    || die "ferrovs check rejects $run_dir/ferrovs.toml: $(cat "$run_dir/check.log")"
fi
ports_syntax=$(ports_as "$syntax")

start_ferrovs() {
  RUST_LOG=${RUST_LOG:-info} "$ferrovs" run --config "$run_dir/ferrovs.toml" \
    --stats-json "$run_dir/stats.json" >"$run_dir/ferrovs.log" 2>&1 </dev/null 9>&- &
  ferrovs_pid=$!
  say "ferrovs: started (pid $ferrovs_pid, ports as $ports_syntax)"
}

# ================================================================================================
# Guests
# ================================================================================================
ip1=169.254.77.1 # link-local: these addresses exist only on the switch between the two guests
ip2=169.254.77.2
mac1=52:54:00:fe:77:01
mac2=52:54:00:fe:77:02

boot_guest() { # N SOCKET MAC IP ROLE PEER
  local n=$1 chardev
  if [ "$vhost_mode" = client ]; then
    chardev="socket,id=c0,path=$2,server=on,wait=off"
  else
    chardev="socket,id=c0,path=$2,reconnect=1"
  fi
  local cmd=("$qemu" "${accel_args[@]}" -machine q35 -smp 1 -m "${guest_ram_mib}M"
    -object "$mem_object" -numa "node,memdev=mem"
    -chardev "$chardev" -netdev "type=vhost-user,id=n0,chardev=c0"
    -device "virtio-net-pci,netdev=n0,vectors=0,mac=$3,romfile="
    -nographic -nodefaults -no-user-config -no-reboot -serial "file:$run_dir/vm$n.console"
    -kernel "$guest_dir/vmlinuz" -initrd "$guest_dir/initramfs.gz"
    -append "console=ttyS0 quiet panic=-1 fvs.role=$5 fvs.ip=$4/24 fvs.peer=$6 fvs.pings=$pings fvs.mib=$mib")
  printf '%q ' "${cmd[@]}" > "$run_dir/vm$n.cmdline"
  "${cmd[@]}" >"$run_dir/vm$n.qemu.log" 2>&1 </dev/null 9>&- &
  qemu_pid[$n]=$!
  say "guest $n: QEMU started (pid $!, $accel, $mem, mac $3, $4)"
}

wait_sockets() {
  local i
  for ((i = 0; i < 300; i++)); do
    [ -S "$sock1" ] && [ -S "$sock2" ] && return 0
    [ -n "$ferrovs_pid" ] && ! kill -0 "$ferrovs_pid" 2>/dev/null && break
    sleep 0.1
  done
  return 1
}

t_boot=$(date +%s.%N)
say "accel=$accel vhost-mode=$vhost_mode (ferrovs side) mem=$mem stream=${mib} MiB each way"
if [ "$vhost_mode" = client ]; then
  # QEMU listens on the sockets; ferrovs (net_vhost client=1) connects and retries by itself.
  boot_guest 2 "$sock2" "$mac2" "$ip2" server "$ip1"
  boot_guest 1 "$sock1" "$mac1" "$ip1" client "$ip2"
  wait_sockets || die "QEMU did not create $sock1 and $sock2 (see $run_dir/vm*.qemu.log)"
  start_ferrovs
else
  # ferrovs listens; QEMU connects (and would reconnect after a switch restart).
  start_ferrovs
  wait_sockets || die "ferrovs did not create its sockets: $(tail -5 "$run_dir/ferrovs.log")"
  boot_guest 2 "$sock2" "$mac2" "$ip2" server "$ip1"
  boot_guest 1 "$sock1" "$mac1" "$ip1" client "$ip2"
fi

# ================================================================================================
# Watch the consoles
# ================================================================================================
declare -A shown=()
show_new() { # N: prints FVS lines not shown yet
  local line
  while IFS= read -r line; do
    line=${line%$'\r'}
    [ -n "${shown["$1:$line"]:-}" ] && continue
    shown["$1:$line"]=1
    say "guest $1: ${line#FVS }"
  done < <(grep -a '^FVS ' "$run_dir/vm$1.console" 2>/dev/null || true)
}
done_both() { grep -aq '^FVS done' "$run_dir/vm1.console" 2>/dev/null && grep -aq '^FVS done' "$run_dir/vm2.console" 2>/dev/null; }
deadline=$(($(date +%s) + timeout_secs))
failure=
grace_end=
while :; do
  show_new 2; show_new 1
  done_both && break
  # Guest 1 drives the test: once it is done, guest 2 has a few seconds to finish too.
  if [ -z "$grace_end" ] && grep -aq '^FVS done' "$run_dir/vm1.console" 2>/dev/null; then
    grace_end=$(($(date +%s) + 15))
  fi
  if [ -n "$grace_end" ] && [ "$(date +%s)" -ge "$grace_end" ]; then
    failure="guest 2 was not done 15 s after guest 1"; break
  fi
  if ! kill -0 "$ferrovs_pid" 2>/dev/null; then failure="ferrovs exited while the guests ran"; break; fi
  if grep -q 'falling back on userspace virtio\|Failed initializing vhost-user memory map' \
       "$run_dir"/vm?.qemu.log 2>/dev/null; then
    failure="QEMU could not share guest memory with the switch (vhost-user fell back to userspace virtio)"; break
  fi
  for n in 1 2; do
    if ! kill -0 "${qemu_pid[$n]}" 2>/dev/null && ! grep -aq '^FVS done' "$run_dir/vm$n.console" 2>/dev/null; then
      sleep 0.3; show_new "$n"   # its last lines may have just landed
      if ! grep -aq '^FVS done' "$run_dir/vm$n.console" 2>/dev/null; then
        st=0; wait "${qemu_pid[$n]}" 2>/dev/null || st=$?
        [ "$st" -gt 128 ] && st="$st (signal $((st - 128)))"
        failure="guest $n's QEMU exited (status $st) before the guest was done"
        failure+="$({ grep -v 'info: QEMU waiting' "$run_dir/vm$n.qemu.log" || true; } | tail -3 | sed 's/^/; /' | tr -d '\n')"
      fi
    fi
  done
  [ -z "$failure" ] || break
  if [ "$(date +%s)" -ge "$deadline" ]; then failure="timed out after ${timeout_secs}s"; break; fi
  sleep 0.2
done
t_guests=$(awk -v a="$(date +%s.%N)" -v b="$t_boot" 'BEGIN { printf "%.1f", a - b }')

# The guests power off when done; then stop the switch (SIGINT: it prints and writes its counters).
for n in 1 2; do stop_pid "${qemu_pid[$n]}" TERM 10; done
qemu_pid=()
ferrovs_rc=0
if kill -0 "$ferrovs_pid" 2>/dev/null; then
  kill -INT "$ferrovs_pid"
  for ((i = 0; i < 300; i++)); do kill -0 "$ferrovs_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$ferrovs_pid" 2>/dev/null; then
    say "ferrovs did not stop within 30 s of SIGINT: SIGKILL"
    kill -KILL "$ferrovs_pid" 2>/dev/null || true
  fi
fi
wait "$ferrovs_pid" 2>/dev/null || ferrovs_rc=$?
ferrovs_pid=

# ================================================================================================
# Verdict
# ================================================================================================
results=()
fails=0
check() { # NAME OK(0/1) DETAIL
  if [ "$2" = 1 ]; then results+=("PASS $1: $3"); else results+=("FAIL $1: $3"); fails=$((fails + 1)); fi
}
field() { # CONSOLE-N KEYWORD NAME: value of NAME= on the guest's "FVS KEYWORD" line
  { grep -a "^FVS $2 " "$run_dir/vm$1.console" 2>/dev/null || true; } | tail -1 | tr -d '\r' | tr ' ' '\n' \
    | sed -n "s/^$3=//p"
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b * 8 / s / 1e6; else print "?" }'; }

[ -z "$failure" ] || check "guests" 0 "$failure"
for n in 1 2; do
  if grep -aq '^FVS fail' "$run_dir/vm$n.console" 2>/dev/null; then
    check "guest $n" 0 "$(grep -a '^FVS fail' "$run_dir/vm$n.console" | tr -d '\r' | sed 's/^FVS fail //' | paste -sd ';' -)"
  fi
done

sent=$(field 1 ping sent); received=$(field 1 ping received); rtt=$(field 1 ping rtt_min_avg_max_ms)
if [ -n "$sent" ] && [ "$sent" = "$pings" ] && [ "$received" = "$sent" ]; then
  check "ping" 1 "guest 1 -> guest 2: $received/$sent replies, rtt min/avg/max ${rtt} ms"
else
  check "ping" 0 "guest 1 -> guest 2: ${received:-0}/${sent:-0} replies of $pings"
fi

want_bytes=$((mib * 1048576))
stream() { # NAME SENDER RECEIVER TIMER
  local name=$1 sb smd5 rb rmd5 secs
  sb=$(field "$2" tcp-send bytes); smd5=$(field "$2" tcp-send md5)
  rb=$(field "$3" tcp-recv bytes); rmd5=$(field "$3" tcp-recv md5)
  if [ "$4" = "$2" ]; then secs=$(field "$2" tcp-send secs); else secs=$(field "$3" tcp-recv secs); fi
  if [ "$sb" = "$want_bytes" ] && [ "$rb" = "$sb" ] && [ -n "$smd5" ] && [ "$rmd5" = "$smd5" ]; then
    check "$name" 1 "$rb bytes intact (md5 $rmd5) in ${secs} s: $(mbps "$rb" "$secs") Mbit/s"
  else
    check "$name" 0 "sent ${sb:-no} bytes (md5 ${smd5:-?}), received ${rb:-no} bytes (md5 ${rmd5:-?})"
  fi
}
stream "tcp guest 1 -> guest 2" 1 2 1
stream "tcp guest 2 -> guest 1" 2 1 1

if [ "$ferrovs_rc" = 0 ] && [ -s "$run_dir/stats.json" ]; then
  check "ferrovs exit" 1 "stopped cleanly on SIGINT"
  in_use=$(jq '.mempool.in_use' "$run_dir/stats.json")
  capacity=$(jq '.mempool.capacity' "$run_dir/stats.json")
  check "ferrovs mbufs" "$([ "$in_use" = 0 ] && echo 1 || echo 0)" "$in_use of $capacity in use at exit"
  learned=0
  for pair in "vm1 $mac1" "vm2 $mac2"; do
    read -r port mac <<<"$pair"
    jq -e --arg p "$port" --arg m "$mac" '.mac_table.entries | any(.port == $p and (.mac | ascii_downcase) == $m)' \
      "$run_dir/stats.json" >/dev/null && learned=$((learned + 1))
  done
  check "ferrovs mac table" "$([ $learned = 2 ] && echo 1 || echo 0)" \
    "$learned of 2 guest MACs learned on their ports ($(jq -r '[.mac_table.entries[] | "\(.mac)@\(.port)"] | join(", ")' "$run_dir/stats.json"))"
  ports=$(jq -r '[.ports[] | "\(.name) rx \(.stats.rx_packets) tx \(.stats.tx_packets)"] | join(", ")' "$run_dir/stats.json")
else
  check "ferrovs exit" 0 "exit status $ferrovs_rc, stats $([ -s "$run_dir/stats.json" ] && echo written || echo missing): $({ grep -a -m3 -iE 'error|panic' "$run_dir/ferrovs.log" || true; } | paste -sd ';' -)"
  ports=
fi

if [ "$fails" -gt 0 ]; then
  for n in 1 2; do
    echo "----- guest $n console, last lines ($run_dir/vm$n.console) -----"
    tail -8 "$run_dir/vm$n.console" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' || true
  done
fi
echo "----- ferrovs at exit ($run_dir/ferrovs.log) -----"
sed -n '/^ferrovs ran/,$p' "$run_dir/ferrovs.log" | grep -v '^\s*$' \
  || { grep -av VHOST_CONFIG "$run_dir/ferrovs.log" || true; } | tail -20
echo "-----"
[ -n "$ports" ] && say "ports: $ports"
say "guests ran $t_guests s; ports as $ports_syntax; logs in $run_dir"
for r in "${results[@]}"; do echo "vm-test: $r"; done
if [ "$fails" -eq 0 ]; then
  echo "vm-test: PASS (${#results[@]} checks, accel $accel, $(elapsed) s)"
  exit 0
fi
echo "vm-test: FAIL ($fails of ${#results[@]} checks failed; logs, consoles and QEMU command lines in $run_dir)"
exit 1

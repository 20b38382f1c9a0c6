#!/usr/bin/env bash
# Forwarding benchmark: ferrovs, OVS-DPDK and dpdk-testpmd side by side, same pcaps, same rules,
# one forwarding core each (core 1; core 0 does the rest), interleaved, REPS repetitions; prints
# the median Mpps and cycles/packet per point and the ratios ferrovs/OVS and ferrovs/testpmd.
#
#   scripts/bench.sh [--reps N] [--warmup S] [--secs S] [--flows "1 1000 100000 200000 1000000"]
#                    [--rules "A C"] [--only "ferrovs ovs testpmd"] [--out DIR] [--no-setup]
#   scripts/bench.sh --setup [--setup-flows N] [--ovs-setup-flows N] [--reps N] [--only "ferrovs ovs"]
#                    [--out DIR] [--no-setup]
#   scripts/bench.sh --vhost [--reps N] [--warmup S] [--secs S] [--only "ferrovs ovs"] [--out DIR] [--no-setup]
#
# --setup measures flow setup instead: a miss storm of N new flows (each its own source MAC, and a
# rule on dl_src, so every flow needs its own megaflow) on one port, replayed until installed,
# while a second port carries one established flow through the same PMD. It reports megaflows
# installed per second during the storm (the slope of the count `run --timeline` samples every
# 5 ms, between 10 % and 90 % of the storm's flows: the method used for OVS below), and the
# established flow's rate over the same span against a run whose first port carries established
# traffic too (over 0.2-0.8 s).
# In the same run, interleaved with ferrovs's reps, OVS-DPDK (a fresh ovsdb-server and vswitchd per
# rep, 1 PMD on CPU 1) gets the same kind of storm and the same two rules (priority=20 dl_src drop,
# priority=10 in_port=1 -> 2): a pcap of N flows x 1 packet, each its own source MAC, read ONCE
# (net_pcap without infinite_rx: the PMD pulls it itself, so it cannot outrun the upcalls) into
# p1 (net_null). The flow limit is raised to 2N (other_config:flow-limit, upcall/set-flow-limit;
# OVS's dynamic limit otherwise starts at 10000 and most of the storm ends as failed upcalls).
# pmd-stats-show is sampled every ~10 ms from before the port is added until the counts settle;
# rate = slope of "miss with success upcall" (datapath flows installed) between 10 % and 90 % of
# its final count; the datapath flows left at the end (dpctl/dump-flows) are logged as a check.
# OVS's N is --ovs-setup-flows (default 190000), not ferrovs's --setup-flows (default 1000000): keep
# it under ~200k (OVS's pcap port has a fixed mempool of 262144 mbufs; larger storms are untried).
# Both are per-flow rates, but the storms differ in size, and OVS's PMD carries no established
# flow beside its storm.
# --only "ferrovs" or --only "ovs" runs one switch. Results: DIR/setup.csv, DIR/setup-summary.txt.
#
# --vhost measures vhost-user instead: one dpdk-testpmd "guest" with two virtio-user ports, one on
# each of the switch's two vhost-user ports, sends 64-byte UDP packets into each port (flowgen
# mode: a thousand flows by destination address) and receives (and drops) what the switch sends
# out of the other, with one forwarding lcore on CPU 0 beside the switch's control core; the switch's one PMD on CPU 1;
# rules in_port=1,actions=output:2 and in_port=2,actions=output:1. (Two guests, a sender and a
# receiver, would share CPU 0 and the kernel's time slices between them, not the switch, would set
# the rate.) ferrovs's ports are `vhost = { mode = "client" }`, OVS's dpdkvhostuserclient (the
# guest listens: server=1). Rate: packets the switch sent to the guest per second, both directions,
# over SECS after WARMUP; also the PMD's busy share (near 100 %: the switch is the limit).
#
# Source: net_pcap (rx_pcap, infinite_rx=1) of N UDP flows, one 64-byte packet per flow, with
# destinations spread (ferrovs gen-pcap --spread). Sink: net_null (no-rx=1).
# Rule sets: A = `in_port=1,actions=output:2`; C = 100 rules over 5 masks (destination prefixes,
# exact and masked UDP ports) that classify the spread traffic, plus a priority-0 catch-all, every
# packet ends on port 2. Rate: packets sent on port 2 per second over SECS after WARMUP.
# OVS cannot load pcaps of more than ~250k packets (fixed mempool): its 1M point is skipped.
# Results: DIR/bench.csv (every run) and DIR/summary.txt (--vhost: vhost.csv, vhost-summary.txt);
# logs in DIR/logs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

reps=3 warmup=3 secs=5
flows_list="1 1000 100000 200000 1000000"
rulesets="A C"
only="ferrovs ovs testpmd"
out=${TMPDIR:-/tmp}/ferrovs-bench
setup=1
mode=forwarding
setup_flows=1000000
ovs_setup_flows=190000
while [ $# -gt 0 ]; do
  case $1 in
    --setup) mode=setup; shift ;;
    --vhost) mode=vhost; shift ;;
    --setup-flows) setup_flows=$2; shift 2 ;;
    --ovs-setup-flows) ovs_setup_flows=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --flows) flows_list=$2; shift 2 ;;
    --rules) rulesets=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-setup) setup=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "bench: $*" >&2; }
wants() { case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# 1M looped packets need ~2.5 GB of mbufs.
[ "$setup" = 1 ] && bash scripts/setup.sh --with-ovs --hugepages 3072 >&2
say "building ferrovs (release)"
cargo build --release --quiet
ferrovs=$root/target/release/ferrovs

mkdir -p "$out/logs" "$out/pcap"
csv=$out/bench.csv
[ "$mode" = vhost ] && csv=$out/vhost.csv
echo "switch,rules,flows,rep,mpps,cycles_per_packet,note" > "$csv"

# Only one userspace OVS datapath fits in a network namespace, and the cores must be ours.
for p in ovs-vswitchd dpdk-testpmd ferrovs; do
  if pgrep -x "$p" >/dev/null; then say "warning: a '$p' is already running: numbers will be off"; fi
done

pcap_for() { # flows -> pcap path (generated once)
  local f=$out/pcap/udp_$1.pcap
  [ -f "$f" ] || "$ferrovs" gen-pcap --flows "$1" --spread -o "$f" 2>/dev/null
  echo "$f"
}

rules_for() { # ruleset -> one ovs-ofctl rule per line, ports by number (p0 = 1, p1 = 2)
  case $1 in
    A) echo "in_port=1,actions=output:2" ;;
    C)
      local i
      for i in $(seq 0 24); do
        echo "priority=300,udp,nw_dst=20.$((i * 10)).0.0/16,tp_dst=$((1024 + i * 2600)),actions=output:2"
        echo "priority=200,ip,nw_dst=20.$((i * 10 + 5)).0.0/16,actions=output:2"
        echo "priority=150,udp,tp_dst=$(printf '0x%x' $(((i % 15 + 1) << 12)))/0xf000,nw_dst=20.$((i * 10 + 1)).0.0/16,actions=output:2"
        echo "priority=100,ip,nw_dst=20.$(((i % 16) * 16)).0.0/12,nw_proto=17,actions=output:2"
      done
      echo "priority=0,actions=output:2"
      ;;
    *) echo "bench: unknown rule set '$1'" >&2; exit 2 ;;
  esac
}

record() { echo "$1,$2,$3,$4,$5,$6,$7" >> "$csv"; }

# --- ferrovs ------------------------------------------------------------------------------------
run_ferrovs() { # rules flows rep
  local rs=$1 n=$2 rep=$3 dir=$out/logs/ferrovs_${1}_${2}_r$3
  mkdir -p "$dir"
  local cache=$((1 << 20))
  [ "$n" -gt $((cache / 2)) ] && cache=$((1 << 22))
  {
    echo '[eal]'
    echo "args = [\"--no-pci\", \"--in-memory\", \"--file-prefix=ferrovs-bench\", \"--log-level=lib.eal:warning\"]"
    echo '[datapath]'
    echo 'pmd_cores = [1]'
    echo 'control_core = 0'
    echo "flow_cache_size = $cache"
    echo 'max_megaflows = 1000000'
    echo '[[port]]'
    echo 'name = "p0"'
    echo "devargs = \"net_pcap0,rx_pcap=$(pcap_for "$n"),infinite_rx=1\""
    echo '[[port]]'
    echo 'name = "p1"'
    echo 'devargs = "net_null0,no-rx=1"'
    echo '[flows]'
    echo 'rules = ['
    rules_for "$rs" | sed 's/.*/  "&",/'
    echo ']'
  } > "$dir/ferrovs.toml"
  if ! RUST_LOG=warn "$ferrovs" run --config "$dir/ferrovs.toml" --warmup "$warmup" \
      --duration "$((warmup + secs))" --stats-json "$dir/stats.json" > "$dir/stdout.log" 2> "$dir/stderr.log"; then
    say "ferrovs $rs $n: failed (see $dir)"; record ferrovs "$rs" "$n" "$rep" "" "" failed; return
  fi
  python3 - "$dir/stats.json" <<'EOF' | { IFS=, read -r mpps cyc note; record ferrovs "$rs" "$n" "$rep" "$mpps" "$cyc" "$note"; }
import json, sys
r = json.load(open(sys.argv[1]))
w = r["window"]; c = w["totals"]["counters"]
tx = w["totals"]["forwarded_mpps"]
note = f"cache {c['cache_hits']} megaflow {c['megaflow_hits']} upcalls {c['upcalls']} drops {c['dropped_packets']} megaflows {r['fastpath']['megaflows']} masks {r['fastpath']['masks']}"
print(f"{tx:.3f},{c['cycles_per_packet']:.0f},{note}")
EOF
}

# --- OVS-DPDK -----------------------------------------------------------------------------------
VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
ovs_dir=""
ovs_stop() {
  [ -n "$ovs_dir" ] || return 0
  local d=$ovs_dir pid
  ovs-appctl -t "$d/vswitchd.ctl" exit --cleanup >/dev/null 2>&1 || true
  for pid in $(cat "$d/vswitchd.pid" "$d/ovsdb.pid" 2>/dev/null); do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  ovs-appctl -t "$d/ovsdb.ctl" exit >/dev/null 2>&1 || true
  rm -rf "/var/run/dpdk/ovs-bench"
  ovs_dir=""
}
trap ovs_stop EXIT

ovs_start() { # dir vsctl: a fresh ovsdb-server and ovs-vswitchd (PMD on CPU 1) with bridge br0
  local d=$1 vsctl=$2
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" --unixctl="$d/ovsdb.ctl" \
    --log-file="$d/ovsdb.log" --detach -vconsole:off
  $vsctl --no-wait init
  $vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-lcore-mask=0x1 \
    other_config:pmd-cpu-mask=0x2 other_config:dpdk-socket-mem=1024 \
    "other_config:dpdk-extra=--no-pci --file-prefix=ovs-bench"
  "$VSWITCHD" "unix:$d/db.sock" --pidfile="$d/vswitchd.pid" --unixctl="$d/vswitchd.ctl" \
    --log-file="$d/vswitchd.log" --detach -vconsole:off
  $vsctl add-br br0 -- set bridge br0 datapath_type=netdev fail-mode=secure
}

run_ovs() { # rules flows rep
  local rs=$1 n=$2 rep=$3 d=$out/logs/ovs_${1}_${2}_r$3
  if [ "$n" -gt 250000 ]; then record ovs "$rs" "$n" "$rep" "" "" "pcap too big for OVS's fixed mempool"; return; fi
  rm -rf "$d"; mkdir -p "$d"; ovs_dir=$d
  local vsctl="ovs-vsctl --timeout=60 --db=unix:$d/db.sock" appctl="ovs-appctl -t $d/vswitchd.ctl"
  local ofctl="ovs-ofctl"
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  ovs_start "$d" "$vsctl"
  $vsctl add-port br0 p1 -- set Interface p1 type=dpdk ofport_request=2 "options:dpdk-devargs=net_null0,no-rx=1"
  # Rules before the source port: flows installed under traffic leave stale ukeys behind.
  rules_for "$rs" > "$d/rules.txt"
  $ofctl --bundle replace-flows br0 "$d/rules.txt" 2>/dev/null || $ofctl replace-flows br0 "$d/rules.txt"
  $vsctl add-port br0 p0 -- set Interface p0 type=dpdk ofport_request=1 \
    "options:dpdk-devargs=net_pcap0,rx_pcap=$(pcap_for "$n"),infinite_rx=1"
  local err
  err=$($vsctl get Interface p0 error 2>/dev/null || true)
  if [ -n "$err" ] && [ "$err" != '""' ] && [ "$err" != "[]" ]; then
    say "ovs $rs $n: port error $err"; record ovs "$rs" "$n" "$rep" "" "" "port error"; ovs_stop; return
  fi
  sleep "$warmup"
  $appctl dpif-netdev/pmd-stats-clear >/dev/null
  local t0 t1 tx0 tx1
  tx0=$($ofctl dump-ports br0 2 | awk -F'[=,]' '/tx pkts/ {print $2; exit}')
  t0=$(date +%s.%N)
  sleep "$secs"
  tx1=$($ofctl dump-ports br0 2 | awk -F'[=,]' '/tx pkts/ {print $2; exit}')
  t1=$(date +%s.%N)
  $appctl dpif-netdev/pmd-stats-show > "$d/pmd-stats.txt"
  $appctl dpctl/dump-flows > "$d/dp-flows.txt" 2>/dev/null || true
  local cyc idle emc mf
  cyc=$(awk -F: '/avg processing cycles per packet/ {split($2, a, " "); print a[1]; exit}' "$d/pmd-stats.txt")
  idle=$(awk '/idle cycles/ {print $NF; exit}' "$d/pmd-stats.txt" | tr -d '()')
  emc=$(awk -F: '/emc hits/ {gsub(/ /,"",$2); print $2; exit}' "$d/pmd-stats.txt")
  local simple
  simple=$(awk -F: '/simple match hits/ {gsub(/ /,"",$2); print $2; exit}' "$d/pmd-stats.txt")
  mf=$(awk -F: '/megaflow hits/ {gsub(/ /,"",$2); print $2; exit}' "$d/pmd-stats.txt")
  ovs_stop
  local mpps
  mpps=$(python3 -c "print(f'{($tx1 - $tx0) / ($t1 - $t0) / 1e6:.3f}')")
  record ovs "$rs" "$n" "$rep" "$mpps" "${cyc%.*}" "idle $idle simple $simple emc $emc megaflow $mf dp-flows $(wc -l < "$d/dp-flows.txt")"
}

# --- dpdk-testpmd io ----------------------------------------------------------------------------
run_testpmd() { # flows rep
  local n=$1 rep=$2 d=$out/logs/testpmd_${1}_r$2
  mkdir -p "$d"
  local mbufs=$((n + 65536))
  dpdk-testpmd -l 0,1 -n 1 --in-memory --no-pci --file-prefix=testpmd-bench --log-level=lib.eal:warning \
    --vdev "net_pcap0,rx_pcap=$(pcap_for "$n"),infinite_rx=1" --vdev net_null0,no-rx=1 -- \
    --forward-mode=io --nb-cores=1 --total-num-mbufs=$mbufs --auto-start --stats-period 1 \
    < /dev/null > "$d/stdout.log" 2>&1 &
  local pid=$!
  sleep $((warmup + secs + 2))
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || true
  # Per-second Tx-pps of port 1, skipping the start-up and warm-up seconds.
  local mpps
  mpps=$(awk '/NIC statistics for port 1/ {p=1; next} /NIC statistics for port/ {p=0} p && /Tx-pps:/ {print $2}' \
    "$d/stdout.log" | python3 -c "
import sys, statistics
v = [float(x) for x in sys.stdin.read().split()][2 + $warmup:][:$secs]
print(f'{statistics.mean(v) / 1e6:.3f}' if v else '')")
  record testpmd io "$n" "$rep" "$mpps" "" ""
}

# --- flow setup -----------------------------------------------------------------------------------
run_setup() { # storm|baseline rep -> "setups/s,established Mpps"
  local kind=$1 rep=$2 dir=$out/logs/setup_${1}_r$2
  mkdir -p "$dir"
  local storm=$out/pcap/storm_$setup_flows.pcap one=$out/pcap/udp_1.pcap
  [ -f "$storm" ] || "$ferrovs" gen-pcap --flows "$setup_flows" --mac-per-flow -o "$storm" 2>/dev/null
  [ -f "$one" ] || "$ferrovs" gen-pcap --flows 1 -o "$one" 2>/dev/null
  local first=$one
  [ "$kind" = storm ] && first=$storm
  cat > "$dir/ferrovs.toml" <<EOF
[eal]
args = ["--no-pci", "--in-memory", "--file-prefix=ferrovs-bench", "--log-level=lib.eal:warning"]
[datapath]
pmd_cores = [1]
control_core = 0
flow_cache_size = $((4 * setup_flows))
max_megaflows = $((2 * setup_flows))
[[port]]
name = "p0"
devargs = "net_pcap0,rx_pcap=$first,infinite_rx=1"
[[port]]
name = "p1"
devargs = "net_null0,no-rx=1"
[[port]]
name = "p2"
devargs = "net_pcap1,rx_pcap=$one,infinite_rx=1"
[[port]]
name = "p3"
devargs = "net_null1,no-rx=1"
[flows]
rules = [
  "priority=20,dl_src=02:00:00:00:00:09,actions=drop",
  "priority=10,in_port=1,actions=output:2",
  "priority=10,in_port=3,actions=output:4",
]
EOF
  # As for OVS: the rate is the slope of megaflows installed between 10 % and 90 % of the storm
  # (from a timeline sampled every 5 ms), and the established flow's rate is taken over the same
  # span; the baseline's over 0.2-0.8 s. A storm not over by the end is reported, not measured.
  RUST_LOG=warn "$ferrovs" run --config "$dir/ferrovs.toml" --duration 2 --timeline \
    --stats-json "$dir/stats.json" > "$dir/stdout.log" 2> "$dir/stderr.log" || { echo ","; return; }
  python3 - "$dir/stats.json" "$kind" "$setup_flows" <<'EOF'
import json, sys
d, kind, flows = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
p3 = [p["name"] for p in d["ports"]].index("p3")
tl = d["timeline"]
if kind == "baseline":
    a = next(t for t in tl if t["secs"] >= 0.2)
    b = next(t for t in tl if t["secs"] >= 0.8)
    print(f",{(b['ports'][p3][1] - a['ports'][p3][1]) / (b['secs'] - a['secs']) / 1e6:.3f}")
    sys.exit()
final = tl[-1]["megaflows_installed"]
if final < 0.95 * flows:
    print(f"bench: storm not over: {final} of {flows} megaflows installed", file=sys.stderr)
    print(",")
    sys.exit()
a = next(t for t in tl if t["megaflows_installed"] >= 0.1 * flows)
b = next(t for t in tl if t["megaflows_installed"] >= 0.9 * flows)
secs = b["secs"] - a["secs"]
rate = (b["megaflows_installed"] - a["megaflows_installed"]) / secs
print(f"{rate:.0f},{(b['ports'][p3][1] - a['ports'][p3][1]) / secs / 1e6:.3f}")
EOF
}

# --- flow setup, OVS-DPDK -------------------------------------------------------------------------
run_ovs_setup() { # rep: appends an "ovs" row to setup.csv
  local rep=$1 n=$ovs_setup_flows d=$out/logs/setup_ovs_r$1
  local storm=$out/pcap/storm_$n.pcap
  [ -f "$storm" ] || "$ferrovs" gen-pcap --flows "$n" --mac-per-flow -o "$storm" 2>/dev/null
  rm -rf "$d"; mkdir -p "$d"; ovs_dir=$d
  local vsctl="ovs-vsctl --timeout=60 --db=unix:$d/db.sock" appctl="ovs-appctl -t $d/vswitchd.ctl"
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  ovs_start "$d" "$vsctl"
  # OVS's dynamic flow limit starts at 10000 (+1000 per revalidator pass): most of the storm would
  # otherwise end as failed upcalls (sent by the slow path, no flow installed).
  $vsctl set Open_vSwitch . "other_config:flow-limit=$((2 * n))"
  $vsctl add-port br0 p1 -- set Interface p1 type=dpdk ofport_request=2 "options:dpdk-devargs=net_null0,no-rx=1"
  # The rules ferrovs gets: the dl_src rule makes every megaflow match the source MAC exactly.
  printf '%s\n' "priority=20,dl_src=02:00:00:00:00:09,actions=drop" "priority=10,in_port=1,actions=output:2" \
    > "$d/rules.txt"
  ovs-ofctl replace-flows br0 "$d/rules.txt"
  $appctl upcall/set-flow-limit $((2 * n)) > /dev/null
  $appctl dpif-netdev/pmd-stats-clear > /dev/null
  # Samples pmd-stats-show over the unixctl socket (no process per sample), from CPU 0 (the PMD's
  # is CPU 1), every ~10 ms until the upcall counts have not moved for 1.5 s.
  taskset -c 0 python3 - "$d/vswitchd.ctl" "$d/samples.txt" <<'EOF' &
import json, re, socket, sys, time
ctl, out = sys.argv[1:3]
sock = socket.socket(socket.AF_UNIX)
sock.connect(ctl)
dec, rid = json.JSONDecoder(), 0
def call(method):
    global rid
    rid += 1
    sock.sendall(json.dumps({"method": method, "params": [], "id": rid}).encode())
    buf = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            sys.exit("ovs-vswitchd closed its unixctl socket")
        buf += chunk
        try:
            return dec.raw_decode(buf.decode())[0].get("result") or ""
        except ValueError:
            pass
keys = ["packets received", "miss with success upcall", "miss with failed upcall", "processing cycles", "idle cycles"]
def sample():
    m = re.search(r"pmd thread.*?(?=\nmain thread|\Z)", call("dpif-netdev/pmd-stats-show"), re.S)
    text = m.group(0) if m else ""
    return [int(m.group(1)) if (m := re.search(r"^\s*" + k + r":\s*(\d+)", text, re.M)) else 0 for k in keys]
t0 = time.time(); last, changed, seen = None, t0, False
with open(out, "w") as f:
    while True:
        t = time.time()
        row = sample()
        f.write(f"{t:.6f} {' '.join(map(str, row))}\n")
        if row[1:3] != last:
            last, changed = row[1:3], t
        seen = seen or row[1] + row[2] > 0
        if (seen and t - changed >= 1.5) or (not seen and t - t0 >= 30) or t - t0 >= 120:
            break
        time.sleep(0.01)
EOF
  local poller=$!
  sleep 1 # samples of the idle PMD first
  date +%s.%N > "$d/add.txt"
  $vsctl add-port br0 p0 -- set Interface p0 type=dpdk ofport_request=1 "options:dpdk-devargs=net_pcap0,rx_pcap=$storm"
  local err
  err=$($vsctl get Interface p0 error 2>/dev/null || true)
  if [ -n "$err" ] && [ "$err" != '""' ] && [ "$err" != "[]" ]; then
    kill "$poller" 2>/dev/null || true; wait "$poller" 2>/dev/null || true
    say "ovs flow setup: port error $err"; ovs_stop
    echo "ovs,$rep,$n,,,,port error" >> "$out/setup.csv"; return
  fi
  wait "$poller" || true
  $appctl dpif-netdev/pmd-stats-show > "$d/pmd-stats.txt"
  $appctl upcall/show > "$d/upcall-show.txt"
  $appctl coverage/show > "$d/coverage.txt" 2>&1 || true
  $vsctl get Interface p0 statistics > "$d/p0-stats.txt" 2>&1 || true
  local dpf
  dpf=$($appctl dpctl/dump-flows 2>/dev/null | grep -c 'actions:' || true)
  ovs_stop
  python3 - "$d" "$rep" "$n" "$dpf" <<'EOF' >> "$out/setup.csv"
import re, sys
d, rep, n, dpf = sys.argv[1:]
rows = [[float(x) for x in line.split()] for line in open(f"{d}/samples.txt") if line.strip()]
for v in rows:  # t rx ok failed processing idle | upcalls
    v.append(v[2] + v[3])
last = rows[-1]
ok, failed, total = last[2], last[3], last[6]
def cross(col, thr):  # when column col reached thr, interpolated between samples
    prev = rows[0]
    for v in rows:
        if v[col] >= thr:
            return v[0] if v[col] == prev[col] else prev[0] + (v[0] - prev[0]) * (thr - prev[col]) / (v[col] - prev[col])
        prev = v
    return rows[-1][0]
def first(col, thr):
    return next(i for i, v in enumerate(rows) if v[col] >= thr)
up = open(f"{d}/upcall-show.txt").read()
m = re.search(r"current (\d+)\).*?limit (\d+)\)", up)
cur, limit = m.groups() if m else ("?", "?")
stats = dict(re.findall(r"(\w+)=(\d+)", open(f"{d}/p0-stats.txt").read()))
rx_drop = int(stats.get("rx_dropped", 0)) + int(stats.get("rx_missed_errors", 0))
if ok <= 0:
    print(f"ovs,{rep},{n},,,,no flow installed: ok {ok:.0f} failed {failed:.0f} dp_flows {dpf}")
    sys.exit()
t10, t90 = cross(2, 0.1 * ok), cross(2, 0.9 * ok)
rate = 0.8 * ok / (t90 - t10) if t90 > t10 else float("nan")
i10, i90 = first(2, 0.1 * ok), first(2, 0.9 * ok)
a, b = rows[i10], rows[i90]
cyc = (b[4] - a[4]) / (b[6] - a[6]) if b[6] > a[6] else float("nan")  # processing cycles per upcall
busy = (b[4] - a[4]) / max(1, (b[4] - a[4]) + (b[5] - a[5]))
tsc = ((last[4] + last[5]) - (rows[0][4] + rows[0][5])) / (last[0] - rows[0][0])
storm = rows[first(6, total)][0] - cross(6, 1)
print(f"ovs,{rep},{n},{rate:.0f},,{cyc:.0f},ok {ok:.0f} failed {failed:.0f} dp_flows {dpf} (upcall/show {cur} limit {limit}) "
      f"storm {storm:.2f} s {len(rows)} samples; pmd busy {busy:.0%} 10-90 %; {tsc / 1e9:.2f} GHz TSC "
      f"-> {tsc / cyc:.0f}/s at 100 % busy; rx_dropped {rx_drop}")
EOF
}

# --- vhost-user: guest -> switch -> guest ------------------------------------------------------
guest_pid=""
guest_stop() {
  [ -n "$guest_pid" ] || return 0
  kill -INT "$guest_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$guest_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$guest_pid" 2>/dev/null || true
  guest_pid=""
  rm -rf /var/run/dpdk/bench-guest
}

guest_start() { # dir: the guest's ports listen on dir/vm0.sock and dir/vm1.sock
  local d=$1
  rm -f "$d/vm0.sock" "$d/vm1.sock"
  # virtio-user shares memory with the switch in at most 8 regions: hugepages in one file per
  # segment list, in memory (nothing left in /dev/hugepages). server=1: each port listens, and
  # start-up waits for the switch to connect to vm0.sock before vm1.sock is created.
  dpdk-testpmd --lcores 0@0,1@0 -n 1 --no-pci --in-memory --single-file-segments -m 512 --no-telemetry \
    --file-prefix=bench-guest --log-level=lib.eal:warning \
    --vdev "net_virtio_user0,path=$d/vm0.sock,server=1,queue_size=1024" \
    --vdev "net_virtio_user1,path=$d/vm1.sock,server=1,queue_size=1024" -- \
    --forward-mode=flowgen --auto-start --stats-period 1 --disable-link-check --nb-cores=1 \
    --txd=1024 --rxd=1024 < /dev/null > "$d/guest.log" 2>&1 &
  guest_pid=$!
  for _ in $(seq 100); do [ -S "$d/vm0.sock" ] && return 0; sleep 0.1; done
  say "the guest did not create its socket (see $d/guest.log)"; return 1
}

run_ferrovs_vhost() { # rep
  local rep=$1 d=$out/logs/vhost_ferrovs_r$1
  rm -rf "$d"; mkdir -p "$d"
  guest_start "$d" || { guest_stop; record ferrovs vhost 1 "$rep" "" "" "guest failed"; return; }
  cat > "$d/ferrovs.toml" <<EOF
[eal]
args = ["--no-pci", "--in-memory", "--file-prefix=ferrovs-bench", "--log-level=lib.eal:warning"]
[datapath]
pmd_cores = [1]
control_core = 0
[[port]]
name = "vm0"
vhost = { path = "$d/vm0.sock", mode = "client" }
[[port]]
name = "vm1"
vhost = { path = "$d/vm1.sock", mode = "client" }
[flows]
rules = ["in_port=1,actions=output:2", "in_port=2,actions=output:1"]
EOF
  local ok=1
  RUST_LOG=warn "$ferrovs" run --config "$d/ferrovs.toml" --warmup "$warmup" --duration "$((warmup + secs))" \
    --stats-json "$d/stats.json" > "$d/stdout.log" 2> "$d/stderr.log" || ok=0
  guest_stop
  if [ "$ok" = 0 ]; then say "ferrovs vhost: failed (see $d)"; record ferrovs vhost 1 "$rep" "" "" failed; return; fi
  python3 - "$d/stats.json" <<'EOF' | { IFS=, read -r mpps cyc note; record ferrovs vhost 1 "$rep" "$mpps" "$cyc" "$note"; }
import json, sys
r = json.load(open(sys.argv[1]))
w = r["window"]
tx = sum(p["tx_mpps"] for p in w["ports"])
p = w["pmds"][0]
busy = p["busy_cycles"] / max(1, p["busy_cycles"] + p["idle_cycles"])
drops = " ".join(f"{k}={v}" for k, v in w["totals"]["counters"]["drops"].items()) or "none"
print(f"{tx:.3f},{p['cycles_per_packet']:.0f},pmd busy {busy:.1%} rx {w['totals']['rx_mpps']:.3f} Mpps drops {drops}")
EOF
}

run_ovs_vhost() { # rep
  local rep=$1 d=$out/logs/vhost_ovs_r$1
  rm -rf "$d"; mkdir -p "$d"; ovs_dir=$d
  local vsctl="ovs-vsctl --timeout=60 --db=unix:$d/db.sock" appctl="ovs-appctl -t $d/vswitchd.ctl"
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  guest_start "$d" || { guest_stop; ovs_dir=""; record ovs vhost 1 "$rep" "" "" "guest failed"; return; }
  ovs_start "$d" "$vsctl"
  printf 'in_port=1,actions=output:2\nin_port=2,actions=output:1\n' | ovs-ofctl add-flows br0 -
  local i
  for i in 0 1; do
    $vsctl add-port br0 "vhu$i" -- set Interface "vhu$i" type=dpdkvhostuserclient ofport_request=$((i + 1)) \
      "options:vhost-server-path=$d/vm$i.sock"
  done
  sleep "$warmup"
  $appctl dpif-netdev/pmd-stats-clear >/dev/null
  local t0 t1 tx0 tx1
  tx_pkts() { ovs-ofctl dump-ports br0 | awk -F'[=,]' '/tx pkts/ {n += $2} END {print n}'; }
  tx0=$(tx_pkts)
  t0=$(date +%s.%N)
  sleep "$secs"
  tx1=$(tx_pkts)
  t1=$(date +%s.%N)
  $appctl dpif-netdev/pmd-stats-show > "$d/pmd-stats.txt"
  ovs-ofctl dump-ports br0 > "$d/ports.txt"
  ovs_stop
  guest_stop
  local cyc idle mpps
  cyc=$(awk -F: '/avg processing cycles per packet/ {split($2, a, " "); print a[1]; exit}' "$d/pmd-stats.txt")
  idle=$(awk '/idle cycles/ {print $NF; exit}' "$d/pmd-stats.txt" | tr -d '()')
  mpps=$(python3 -c "print(f'{($tx1 - $tx0) / ($t1 - $t0) / 1e6:.3f}')")
  record ovs vhost 1 "$rep" "$mpps" "${cyc%.*}" "pmd idle $idle"
}

if [ "$mode" = vhost ]; then
  trap 'ovs_stop; guest_stop' EXIT
  for rep in $(seq 1 "$reps"); do
    wants ferrovs && { say "rep $rep: ferrovs vhost"; run_ferrovs_vhost "$rep"; }
    wants ovs && { say "rep $rep: ovs vhost"; run_ovs_vhost "$rep"; }
  done
  python3 - "$csv" <<'EOF' | tee "$out/vhost-summary.txt"
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["rules"] == "vhost"]
def med(sw):
    v = [float(r["mpps"]) for r in rows if r["switch"] == sw and r["mpps"]]
    return (statistics.median(v) if v else None), v
(f, fv), (o, ov) = med("ferrovs"), med("ovs")
fmt = lambda x: "-" if x is None else f"{x:.2f}"
print("vhost-user: virtio-user -> switch -> virtio-user, both directions, 64-byte UDP, 1 PMD core; median Mpps")
print(f"ferrovs   {fmt(f):>6}  (reps: {', '.join(f'{x:.2f}' for x in fv)})")
print(f"OVS-DPDK  {fmt(o):>6}  (reps: {', '.join(f'{x:.2f}' for x in ov)})")
print(f"ferrovs/OVS {fmt(f / o if f and o else None)}")
for r in rows:
    print(f"  {r['switch']} rep {r['rep']}: {r['mpps']} Mpps, {r['cycles_per_packet']} cycles/packet, {r['note']}")
EOF
  say "results: $csv, summary: $out/vhost-summary.txt"
  exit 0
fi

if [ "$mode" = setup ]; then
  echo "kind,rep,flows,megaflows_per_sec,established_mpps,cycles_per_setup,note" > "$out/setup.csv"
  for rep in $(seq 1 "$reps"); do
    if wants ferrovs; then
      for kind in baseline storm; do
        say "rep $rep: flow setup, ferrovs $kind"
        echo "$kind,$rep,$setup_flows,$(run_setup "$kind" "$rep"),," >> "$out/setup.csv"
      done
    fi
    if wants ovs; then say "rep $rep: flow setup, ovs"; run_ovs_setup "$rep"; fi
  done
  python3 - "$out/setup.csv" <<'EOF' | tee "$out/setup-summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(kind, k):
    v = [float(r[k]) for r in rows if r["kind"] == kind and r[k]]
    return statistics.median(v) if v else None
flows = lambda kind: next((int(r["flows"]) for r in rows if r["kind"] == kind), 0)
setup, during, before = med("storm", "megaflows_per_sec"), med("storm", "established_mpps"), med("baseline", "established_mpps")
ovs = med("ovs", "megaflows_per_sec")
if setup:
    print(f"ferrovs flow setup during the storm: {setup:,.0f} megaflows/s (median of reps, {flows('storm'):,} flows)")
if during and before:
    print(f"established flow: {during:.2f} Mpps during the storm, {before:.2f} Mpps without ({during / before:.0%})")
if ovs:
    print(f"OVS-DPDK flow setup: {ovs:,.0f} flows/s (median of reps, {flows('ovs'):,} flows)")
    cyc = med("ovs", "cycles_per_setup")
    if cyc:
        print(f"  OVS PMD processing cycles per upcall: {cyc:,.0f} (median of reps)")
if setup and ovs:
    print(f"ferrovs/OVS: {setup / ovs:.2f} (per-flow setup rates; storms of {flows('storm'):,} and {flows('ovs'):,} flows, "
          f"ferrovs's with an established flow on its PMD, OVS's without)")
for r in rows:
    if r["kind"] == "ovs":
        print(f"  ovs rep {r['rep']}: {r['megaflows_per_sec'] or '-'} flows/s, {r['note']}")
    elif r["kind"] == "storm":
        print(f"  ferrovs rep {r['rep']}: {r['megaflows_per_sec'] or '-'} megaflows/s, established {r['established_mpps'] or '-'} Mpps")
EOF
  exit 0
fi

for rep in $(seq 1 "$reps"); do
  for n in $flows_list; do
    for rs in $rulesets; do
      wants ferrovs && { say "rep $rep: ferrovs $rs $n flows"; run_ferrovs "$rs" "$n" "$rep"; }
      wants ovs && { say "rep $rep: ovs $rs $n flows"; run_ovs "$rs" "$n" "$rep"; }
    done
    wants testpmd && { say "rep $rep: testpmd io $n flows"; run_testpmd "$n" "$rep"; }
  done
done

python3 - "$csv" <<'EOF' | tee "$out/summary.txt"
import csv, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
cyc = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    if r["mpps"]:
        runs[(r["switch"], r["rules"], int(r["flows"]))].append(float(r["mpps"]))
    if r["cycles_per_packet"]:
        cyc[(r["switch"], r["rules"], int(r["flows"]))].append(float(r["cycles_per_packet"]))
med = lambda k, d=runs: statistics.median(d[k]) if d.get(k) else None
fmt = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"
flows = sorted({k[2] for k in runs})
rules = sorted({k[1] for k in runs if k[0] != "testpmd"})
print("median Mpps (cycles/packet) over reps; 64-byte UDP, 1 forwarding core")
print(f"{'rules':>5} {'flows':>8} {'ferrovs':>16} {'OVS-DPDK':>16} {'testpmd io':>10} {'ferrovs/OVS':>11} {'ferrovs/testpmd':>15}")
for rs in rules:
    for n in flows:
        f, o, t = med(("ferrovs", rs, n)), med(("ovs", rs, n)), med(("testpmd", "io", n))
        fc, oc = med(("ferrovs", rs, n), cyc), med(("ovs", rs, n), cyc)
        print(f"{rs:>5} {n:>8} {fmt(f):>8} ({fmt(fc, 0):>5}) {fmt(o):>8} ({fmt(oc, 0):>5}) {fmt(t):>10} "
              f"{fmt(f / o if f and o else None):>11} {fmt(f / t if f and t else None):>15}")
EOF
say "results: $csv, summary: $out/summary.txt"

//! Every kind of bad configuration, each with the exact one-line error `ferrovs check` prints.

use std::path::Path;

use ferrovs_config::flow::Action;
use ferrovs_config::{Config, ConfigError, Host};

fn host() -> Host {
    Host { cpus: vec![0, 1, 2, 3] }
}

/// A directory holding `in.pcap` (an existing input file) and `flows.txt`.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.pcap"), b"").unwrap();
    std::fs::write(dir.path().join("flows.txt"), "# comment\n\npriority=5,in_port=p1,actions=output:p0\n").unwrap();
    dir
}

const PORTS: &str = r#"
[[port]]
name = "p0"
devargs = "net_pcap0,rx_pcap=in.pcap"
[[port]]
name = "p1"
devargs = "net_pcap1,tx_pcap=out.pcap"
ofport = 2
"#;

fn check(text: &str, dir: &Path) -> Result<Config, ConfigError> {
    Config::parse(text, dir, &host())
}

#[test]
fn the_issue_example_is_valid_and_resolves_paths() {
    let dir = fixture();
    let text = format!(
        r#"
[eal]
args = ["--no-pci", "--in-memory"]
[datapath]
pmd_cores = [1]
control_core = 0
burst_size = 32
{PORTS}
[flows]
rules = ["priority=10,in_port=p0,actions=output:p1"]
file = "flows.txt"
"#
    );
    let config = check(&text, dir.path()).unwrap();
    assert_eq!(config.eal_args, ["--no-pci", "--in-memory"]);
    assert_eq!((config.datapath.pmd_cores.as_slice(), config.datapath.control_core), (&[1][..], 0));
    assert_eq!(config.ports[0].ofport, 1);
    assert_eq!(config.ports[1].ofport, 2);
    let rx = dir.path().join("in.pcap");
    assert_eq!(config.ports[0].devargs.to_string(), format!("net_pcap0,rx_pcap={}", rx.display()));
    assert_eq!(config.flows.len(), 2);
    assert_eq!((config.flows[0].matches.key.in_port(), config.flows[0].matches.mask.in_port()), (1, 0xffff));
    assert_eq!(config.flows[1].actions, vec![Action::Output(1)]);
    assert_eq!(config.flows[1].priority, 5);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let dir = fixture();
    let config = check("", dir.path()).unwrap();
    assert_eq!(config.datapath.pmd_cores, [1]);
    assert_eq!(config.datapath.control_core, 0);
    assert_eq!(config.datapath.burst_size, 64);
    assert!(config.ports.is_empty() && config.eal_args.is_empty());
    // No rules: a learning switch, as an Open vSwitch bridge out of the box.
    assert_eq!(config.flows.len(), 1);
    assert_eq!((config.flows[0].priority, &config.flows[0].actions[..]), (0, &[Action::Normal][..]));
    assert_eq!(config.bridge, ferrovs_config::Bridge::default());
    assert_eq!((config.bridge.mac_table_size, config.bridge.mac_aging_secs), (8192, 300));
}

#[test]
fn bad_configs_give_one_exact_line() {
    let dir = fixture();
    let d = dir.path().display().to_string();
    let cases: Vec<(String, String)> = vec![
        // Unknown key (deny_unknown_fields), reported with line and column.
        ("[datapath]\npmd_cores = [1]\nburstsize = 3\n".into(),
         "<config>:3:1: unknown field `burstsize`, expected one of `pmd_cores`, `control_core`, `burst_size`, `allow_shared_cores`, `flow_cache_size`, `max_megaflows`, `upcall_rate`".into()),
        // Wrong type.
        ("[datapath]\nburst_size = \"big\"\n".into(), "<config>:2:14: datapath.burst_size: invalid type: string \"big\", expected i64".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\n[[port]]\nname = \"p1\"\ndevargs = \"net_null1\"\nofport = \"x\"\n".into(),
         "<config>:7:10: port[1].ofport: invalid type: string \"x\", expected i64".into()),
        // Bad numbers.
        ("[datapath]\nburst_size = 0\n".into(), "datapath.burst_size: must be between 1 and 64, got 0".into()),
        ("[datapath]\nburst_size = 100\n".into(), "datapath.burst_size: must be between 1 and 64, got 100".into()),
        // Cores.
        ("[datapath]\npmd_cores = [1, 9]\n".into(),
         "datapath.pmd_cores[1]: core 9 does not exist (this machine has cores 0,1,2,3)".into()),
        ("[datapath]\ncontrol_core = -1\n".into(),
         "datapath.control_core: core -1 does not exist (this machine has cores 0,1,2,3)".into()),
        ("[datapath]\npmd_cores = [1, 0]\ncontrol_core = 0\n".into(),
         "datapath.pmd_cores[1]: core 0 is also the control_core; a PMD needs a core of its own".into()),
        ("[datapath]\npmd_cores = [2, 2]\n".into(),
         "datapath.pmd_cores[1]: core 2 is listed twice (set allow_shared_cores = true to let PMDs share a CPU)".into()),
        ("[datapath]\nflow_cache_size = 0\n".into(), "datapath.flow_cache_size: must be between 1 and 67108864, got 0".into()),
        ("[datapath]\nupcall_rate = -5\n".into(), "datapath.upcall_rate: must be between 0 and 100000000, got -5".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nrx_queues = 0\n".into(),
         "port[0].rx_queues: must be between 1 and 64, got 0".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nrx_queues = 2\npmd_rxq_affinity = \"0:1,2:1\"\n".into(),
         "port[0].pmd_rxq_affinity: queue 2 does not exist (rx_queues = 2)".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\npmd_rxq_affinity = \"0:3\"\n".into(),
         "port[0].pmd_rxq_affinity: core 3 is not one of datapath.pmd_cores [1]".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\npmd_rxq_affinity = \"zero:1\"\n".into(),
         "port[0].pmd_rxq_affinity: \"zero:1\" is not QUEUE:CORE (e.g. \"0:1,1:2\")".into()),
        ("[datapath]\npmd_cores = []\n".into(), "datapath.pmd_cores: needs at least one core".into()),
        // EAL arguments that ferrovs derives.
        ("[eal]\nargs = [\"-l\", \"0-1\"]\n".into(),
         "eal.args[0]: \"-l\" is derived from [datapath] pmd_cores and control_core; remove it".into()),
        ("[eal]\nargs = [\"--in-memory\", \"--lcores=0@0\"]\n".into(),
         "eal.args[1]: \"--lcores=0@0\" is derived from [datapath] pmd_cores and control_core; remove it".into()),
        ("[eal]\nargs = [\"\"]\n".into(), "eal.args[0]: empty argument".into()),
        // Ports.
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\n[[port]]\nname = \"p0\"\ndevargs = \"net_null1\"\n".into(),
         "port[1].name: \"p0\" is already the name of port[0]".into()),
        ("[[port]]\nname = \"\"\ndevargs = \"net_null0\"\n".into(), "port[0].name: is empty".into()),
        ("[[port]]\nname = \"in_port\"\ndevargs = \"net_null0\"\n".into(),
         "port[0].name: \"in_port\" is a reserved word in flow syntax".into()),
        ("[[port]]\nname = \"1x\"\ndevargs = \"net_null0\"\n".into(),
         "port[0].name: \"1x\" is not a valid port name (a letter, then up to 31 letters, digits, '_', '-' or '.')".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"\"\n".into(),
         "port[0].devargs: is empty: give a PCI address (0000:01:00.0) or a vdev (net_pcap0,rx_pcap=in.pcap)".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_pcap0,rx_pcap\"\n".into(),
         "port[0].devargs: malformed argument \"rx_pcap\": expected key=value".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"pcap0,rx_pcap=in.pcap\"\n".into(),
         "port[0].devargs: device \"pcap0\" is neither a PCI address (0000:01:00.0) nor a network vdev name (net_pcap0, net_null0, ...)".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_pcap0,rx_pcap=missing.pcap\"\n".into(),
         format!("port[0].devargs: rx_pcap: file {d}/missing.pcap does not exist")),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_pcap0,tx_pcap=no/such/dir/out.pcap\"\n".into(),
         format!("port[0].devargs: tx_pcap: directory {d}/no/such/dir does not exist")),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\n[[port]]\nname = \"p1\"\ndevargs = \"net_null0,no-rx=1\"\n".into(),
         "port[1].devargs: device net_null0 is already used by port[0] (p0)".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nofport = 0\n".into(),
         "port[0].ofport: must be between 1 and 65279, got 0".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nofport = 7\n[[port]]\nname = \"p1\"\ndevargs = \"net_null1\"\nofport = 7\n".into(),
         "port[1].ofport: ofport 7 is already used by port[0]".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\n[[port]]\nname = \"p1\"\ndevargs = \"net_null1\"\nofport = 1\n".into(),
         "port[0].ofport: the default ofport 1 (its position) is taken by port[1]; give an explicit ofport".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nrx_desc = 10\n".into(),
         "port[0].rx_desc: must be between 64 and 16384, got 10".into()),
        // Flows.
        (format!("{PORTS}[flows]\nrules = [\"in_port=p0,actions=output:p9\"]\n"),
         "flows.rules[0]: \"in_port=p0,actions=output:p9\": output: unknown port \"p9\"".into()),
        (format!("{PORTS}[flows]\nrules = [\"tp_dst=80,actions=drop\"]\n"),
         "flows.rules[0]: \"tp_dst=80,actions=drop\": tp_dst: needs tcp, udp or sctp (or tcp6, udp6, sctp6) in the match (e.g. \"tcp,tp_dst=...\")".into()),
        (format!("{PORTS}[flows]\nrules = [\"actions=drop\", \"in_port=p7,actions=drop\"]\n"),
         "flows.rules[1]: \"in_port=p7,actions=drop\": in_port: unknown port \"p7\"".into()),
        (format!("{PORTS}[flows]\nrules = [\"priority=10,in_port=p0\"]\n"),
         "flows.rules[0]: \"priority=10,in_port=p0\": missing actions= (every rule needs one; use actions=drop to drop)".into()),
        (format!("{PORTS}[flows]\nfile = \"nope.txt\"\n"),
         format!("flows.file: cannot read {d}/nope.txt: No such file or directory (os error 2)")),
        // VLANs and MAC learning.
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nvlan_mode = \"hybrid\"\n".into(),
         "port[0].vlan_mode: \"hybrid\" is not one of \"access\", \"trunk\", \"native-untagged\", \"native-tagged\"".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\ntag = 4096\n".into(),
         "port[0].tag: a VLAN id is between 0 and 4095, got 4096".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\ntrunks = [10, -1]\n".into(),
         "port[0].trunks[1]: a VLAN id is between 0 and 4095, got -1".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\ntrunks = [10, 10]\n".into(),
         "port[0].trunks[1]: VLAN 10 is listed twice".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\ntag = 10\ntrunks = [20]\n".into(),
         "port[0].trunks: an access port carries only the VLAN of its tag; remove trunks, or set vlan_mode = \"trunk\", \"native-untagged\" or \"native-tagged\"".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nvlan_mode = \"trunk\"\ntag = 10\n".into(),
         "port[0].tag: a trunk port has no VLAN of its own; remove tag, or set vlan_mode = \"access\", \"native-untagged\" or \"native-tagged\"".into()),
        ("[bridge]\nmac_table_size = 0\n".into(), "bridge.mac_table_size: must be between 1 and 1048576, got 0".into()),
        ("[bridge]\nmac_aging_secs = 0\n".into(), "bridge.mac_aging_secs: must be between 1 and 86400, got 0".into()),
        (format!("{PORTS}[bridge]\nstatic_macs = [{{ mac = \"02:00:00:00:00:zz\", port = \"p0\" }}]\n"),
         "bridge.static_macs[0].mac: \"02:00:00:00:00:zz\" is not a MAC address (xx:xx:xx:xx:xx:xx)".into()),
        (format!("{PORTS}[bridge]\nstatic_macs = [{{ mac = \"01:00:5e:00:00:01\", port = \"p0\" }}]\n"),
         "bridge.static_macs[0].mac: 01:00:5e:00:00:01 is a multicast address; only unicast addresses are learned".into()),
        (format!("{PORTS}[bridge]\nstatic_macs = [{{ mac = \"02:00:00:00:00:01\", port = \"p5\" }}]\n"),
         "bridge.static_macs[0].port: no port is called \"p5\"".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\ntag = 10\n[bridge]\nstatic_macs = [{ mac = \"02:00:00:00:00:01\", port = \"p0\", vlan = 20 }]\n".into(),
         "bridge.static_macs[0].vlan: port p0 (access port) does not carry VLAN 20".into()),
        (format!("{PORTS}[bridge]\nstatic_macs = [{{ mac = \"02:00:00:00:00:01\", port = \"p0\" }}, {{ mac = \"02:00:00:00:00:01\", port = \"p1\" }}]\n"),
         "bridge.static_macs[1].mac: 02:00:00:00:00:01 in VLAN 0 is already bridge.static_macs[0]".into()),
        // vhost-user ports.
        ("[[port]]\nname = \"p0\"\n".into(),
         "port[0]: needs devargs (a DPDK device) or vhost (a vhost-user socket)".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nvhost = { path = \"vm.sock\" }\n".into(),
         "port[0].vhost: a port has devargs or vhost, not both".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"\" }\n".into(), "port[0].vhost.path: is empty".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"no/dir/vm.sock\" }\n".into(),
         format!("port[0].vhost.path: directory {d}/no/dir does not exist")),
        (format!("[[port]]\nname = \"vm0\"\nvhost = {{ path = \"{}.sock\" }}\n", "s".repeat(100)),
         format!("port[0].vhost.path: {d}/{}.sock is {} bytes; a Unix socket path has at most 107", "s".repeat(100), d.len() + 106)),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"a,b.sock\" }\n".into(),
         "port[0].vhost.path: \"a,b.sock\" contains ',', which DPDK device arguments cannot carry".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\", mode = \"listen\" }\n".into(),
         "port[0].vhost.mode: \"listen\" is not one of \"client\", \"server\"".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"in.pcap\", mode = \"server\" }\n".into(),
         format!("port[0].vhost.path: {d}/in.pcap exists and is not a socket (a server creates it)")),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\", queues = 0 }\n".into(),
         "port[0].vhost.queues: must be between 1 and 32, got 0".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\", queues = 33 }\n".into(),
         "port[0].vhost.queues: must be between 1 and 32, got 33".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\", queues = 2 }\nrx_queues = 4\n".into(),
         "port[0].rx_queues: a vhost port receives on its vhost.queues (2) queue pairs, got 4; remove rx_queues".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\" }\n[[port]]\nname = \"vm1\"\nvhost = { path = \"vm.sock\", mode = \"server\" }\n".into(),
         format!("port[1].vhost.path: socket {d}/vm.sock is already used by port[0] (vm0)")),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\" }\n[[port]]\nname = \"vm1\"\ndevargs = \"net_vhost7,iface=vm.sock\"\n".into(),
         format!("port[1].devargs: socket {d}/vm.sock is already used by port[0] (vm0)")),
        ("[[port]]\nname = \"vm0\"\nvhost = { path = \"vm.sock\", queue = 2 }\n".into(),
         "<config>:3:29: unknown field `queue`, expected one of `path`, `mode`, `queues`".into()),
        ("[[port]]\nname = \"vm0\"\nvhost = { mode = \"client\" }\n".into(),
         "<config>:3:9: missing field `path`".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nmtu = 10000\n".into(),
         "port[0].mtu: must be between 68 and 9710, got 10000".into()),
        ("[[port]]\nname = \"p0\"\ndevargs = \"net_null0\"\nmtu = 67\n".into(),
         "port[0].mtu: must be between 68 and 9710, got 67".into()),
    ];
    assert!(cases.len() >= 10);
    for (text, expected) in cases {
        let err = check(&text, dir.path()).expect_err(&text);
        assert_eq!(err.to_string(), expected, "config:\n{text}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}

#[test]
fn a_bad_line_in_the_flows_file_names_file_and_line() {
    let dir = fixture();
    std::fs::write(dir.path().join("bad.txt"), "actions=drop\n# ok\nin_port=p0 actions=output:nowhere\n").unwrap();
    let err = check(&format!("{PORTS}[flows]\nfile = \"bad.txt\"\n"), dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "flows.file: {}/bad.txt:3: \"in_port=p0 actions=output:nowhere\": output: unknown port \"nowhere\"",
            dir.path().display()
        )
    );
}

#[test]
fn load_reads_relative_to_the_config_file() {
    let dir = fixture();
    let path = dir.path().join("ferrovs.toml");
    std::fs::write(&path, format!("{PORTS}[flows]\nfile = \"flows.txt\"\n")).unwrap();
    let config = Config::load(&path, &host()).unwrap();
    assert_eq!(config.flows.len(), 1);
    let missing = Config::load(&dir.path().join("nope.toml"), &host()).unwrap_err();
    assert!(missing.to_string().ends_with("nope.toml: cannot read: No such file or directory (os error 2)"));
}

#[test]
fn vlan_settings_and_bridge_follow_open_vswitch_defaults() {
    let dir = fixture();
    let text = r#"
[[port]]
name = "a"
devargs = "net_null0"
tag = 10
[[port]]
name = "t"
devargs = "net_null1"
[[port]]
name = "n"
devargs = "net_null2"
vlan_mode = "native-untagged"
tag = 5
trunks = [30, 20]
[bridge]
mac_table_size = 100
mac_aging_secs = 15
static_macs = [{ mac = "02:00:00:00:00:01", port = "n", vlan = 20 }]
"#;
    let c = check(text, dir.path()).unwrap();
    use ferrovs_config::{StaticMac, VlanMode};
    let modes: Vec<(VlanMode, u16, Vec<u16>)> =
        c.ports.iter().map(|p| (p.vlan.mode, p.vlan.tag, p.vlan.trunks.clone())).collect();
    assert_eq!(
        modes,
        [(VlanMode::Access, 10, vec![]), (VlanMode::Trunk, 0, vec![]), (VlanMode::NativeUntagged, 5, vec![20, 30])]
    );
    // A native port also carries its native VLAN, and (native VLAN not 0) never VLAN 0.
    assert!(c.ports[2].vlan.includes(5) && c.ports[2].vlan.includes(30) && !c.ports[2].vlan.includes(0));
    assert!(c.ports[1].vlan.includes(0) && c.ports[1].vlan.includes(4095));
    assert_eq!((c.bridge.mac_table_size, c.bridge.mac_aging_secs), (100, 15));
    assert_eq!(c.bridge.static_macs, [StaticMac { mac: [2, 0, 0, 0, 0, 1], ofport: 3, vlan: 20 }]);
}

#[test]
fn a_vhost_port_becomes_net_vhost_devargs() {
    let dir = fixture();
    let d = dir.path().display();
    let text = r#"
[[port]]
name = "vm0"
vhost = { path = "vm0.sock" }
[[port]]
name = "vm1"
vhost = { path = "/tmp/vm1.sock", mode = "server", queues = 2 }
rx_queues = 2
mtu = 9000
[[port]]
name = "p2"
devargs = "net_null0"
"#;
    let c = check(text, dir.path()).unwrap();
    use ferrovs_config::{VhostMode, VhostPort};
    assert_eq!(
        c.ports[0].vhost,
        Some(VhostPort { path: dir.path().join("vm0.sock"), mode: VhostMode::Client, queues: 1 })
    );
    assert_eq!(c.ports[0].devargs.to_string(), format!("net_vhost0,iface={d}/vm0.sock,queues=1,client=1"));
    assert_eq!(c.ports[1].devargs.to_string(), "net_vhost1,iface=/tmp/vm1.sock,queues=2,client=0");
    assert_eq!((c.ports[0].rx_queues, c.ports[1].rx_queues), (1, 2));
    assert_eq!((c.ports[0].mtu, c.ports[1].mtu), (None, Some(9000)));
    assert_eq!((c.ports[2].vhost.as_ref(), c.ports[2].mtu), (None, None));
}

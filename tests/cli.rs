//! The command line: `check` on bad configs, errors at start-up, graceful stop on SIGTERM,
//! `gen-pcap`, `--version`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{ferrovs, read_pcap, traffic, write_pcap};

fn check(dir: &std::path::Path, toml: &str) -> Output {
    let path = dir.join("c.toml");
    std::fs::write(&path, toml).unwrap();
    ferrovs().args(["check", "--config"]).arg(&path).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PORTS: &str = "[[port]]\nname = \"p0\"\ndevargs = \"net_pcap0,rx_pcap=in.pcap\"\n[[port]]\nname = \"p1\"\ndevargs = \"net_null0,no-rx=1\"\n";

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    write_pcap(&dir.path().join("in.pcap"), &[]);
    let o = check(dir.path(), &format!("{PORTS}[flows]\nrules = [\"in_port=p0,actions=output:p1\"]\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (2 ports, 1 PMD cores, 1 flow rules)"));
}

#[test]
fn check_rejects_each_bad_config_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    write_pcap(&dir.path().join("in.pcap"), &[]);
    let cases = [
        ("[datapath\npmd_cores = [1]\n", ":1:10: "),
        ("[datapath]\nfoo = 1\n", "unknown field `foo`"),
        ("[datapath]\nburst_size = 1000\n", "datapath.burst_size: must be between 1 and 64, got 1000"),
        ("[datapath]\npmd_cores = [4096]\n", "datapath.pmd_cores[0]: core 4096 does not exist"),
        ("[datapath]\npmd_cores = [0]\ncontrol_core = 0\n", "datapath.pmd_cores[0]: core 0 is also the control_core"),
        (
            "[[port]]\nname = \"a\"\ndevargs = \"net_null0\"\n[[port]]\nname = \"a\"\ndevargs = \"net_null1\"\n",
            "port[1].name: \"a\" is already the name of port[0]",
        ),
        ("[[port]]\nname = \"a\"\ndevargs = \"   \"\n", "port[0].devargs: is empty"),
        ("[[port]]\nname = \"a\"\ndevargs = \"net_pcap0,rx_pcap=gone.pcap\"\n", "port[0].devargs: rx_pcap: file"),
        ("[[port]]\nname = \"a\"\ndevargs = \"net_null0,,x=1\"\n", "port[0].devargs: has an empty argument"),
        (
            &format!("{PORTS}[flows]\nrules = [\"in_port=p0,actions=output:p7\"]\n"),
            "flows.rules[0]: \"in_port=p0,actions=output:p7\": output: unknown port \"p7\"",
        ),
        (
            &format!("{PORTS}[flows]\nrules = [\"in_port=p0,nw_dst=1.2.3.4,actions=drop\"]\n"),
            "nw_dst: needs ip or arp in the match",
        ),
        ("[eal]\nargs = [\"-l\", \"0\"]\n", "eal.args[0]: \"-l\" is derived from [datapath]"),
        (
            "[[port]]\nname = \"a\"\ndevargs = \"net_null0\"\nofport = 70000\n",
            "port[0].ofport: must be between 1 and 65279, got 70000",
        ),
    ];
    for (toml, expected) in cases {
        let o = check(dir.path(), toml);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "config:\n{toml}\nstderr: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected, got:\n{err}");
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "config:\n{toml}\nwanted {expected:?}, got {err:?}"
        );
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn check_reports_a_missing_config_file() {
    let o = ferrovs().args(["check", "--config", "/nonexistent/ferrovs.toml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: /nonexistent/ferrovs.toml: cannot read: No such file or directory (os error 2)"
    );
}

/// Runs `ferrovs run` on `toml`, expecting it to fail at start-up: exit 1, an error line, no panic.
fn run_expecting_failure(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).unwrap();
    let o = ferrovs().args(["run", "--duration", "1", "--config"]).arg(&path).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn run_fails_cleanly_when_a_device_cannot_be_probed() {
    let err = run_expecting_failure(
        "[eal]\nargs = [\"--no-pci\", \"--in-memory\"]\n[[port]]\nname = \"p0\"\ndevargs = \"net_nosuchdriver0\"\n",
    );
    assert!(err.contains("error: port p0: cannot probe device \"net_nosuchdriver0\""), "{err}");
}

#[test]
fn run_fails_cleanly_when_eal_rejects_its_arguments() {
    let err = run_expecting_failure("[eal]\nargs = [\"--no-such-eal-option\"]\n");
    assert!(err.contains("error: rte_eal_init failed"), "{err}");
}

/// SIGTERM mid-run: the switch stops, prints its counters, closes ports (the capture is complete),
/// leaks nothing, and exits 0.
#[test]
fn sigterm_stops_gracefully_with_complete_captures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pcap(&d.join("loop.pcap"), &traffic::mixed(1, 64));
    let once: Vec<Vec<u8>> = traffic::mixed(2, 5000);
    write_pcap(&d.join("once.pcap"), &once);
    std::fs::write(
        d.join("c.toml"),
        "[eal]\nargs = [\"--no-pci\", \"--in-memory\"]\n\
         [[port]]\nname = \"src\"\ndevargs = \"net_pcap0,rx_pcap=loop.pcap,infinite_rx=1\"\n\
         [[port]]\nname = \"sink\"\ndevargs = \"net_null0,no-rx=1\"\n\
         [[port]]\nname = \"once\"\ndevargs = \"net_pcap1,rx_pcap=once.pcap\"\n\
         [[port]]\nname = \"cap\"\ndevargs = \"net_pcap2,tx_pcap=cap.pcap\"\n\
         [flows]\nrules = [\"in_port=src,actions=output:sink\", \"in_port=once,actions=output:cap\"]\n",
    )
    .unwrap();
    let mut child = ferrovs()
        .args(["run", "--stats-json", "s.json", "--config", "c.toml"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut line, deadline) = (String::new(), Instant::now() + Duration::from_secs(60));
    while !line.contains("forwarding with") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline, "no start-up line");
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}", out.status);
    assert!(stdout.contains("mempool: 0 of"), "{stdout}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("s.json")).unwrap()).unwrap();
    let port =
        |name: &str| stats["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["stats"].clone();
    assert!(port("sink")["tx_packets"].as_u64().unwrap() > 0);
    // The capture is complete: every packet the port counted is in the file, intact.
    let captured = read_pcap(&d.join("cap.pcap"));
    assert_eq!(captured.len() as u64, port("cap")["tx_packets"].as_u64().unwrap());
    // Every packet captured is one that was sent (all of it, intact), flows in order.
    let sent: std::collections::HashSet<&Vec<u8>> = once.iter().collect();
    assert!(captured.iter().all(|f| sent.contains(f)), "a captured packet was not sent");
    assert_eq!(stats["mempool"]["in_use"], 0);
}

#[test]
fn gen_pcap_writes_the_flows_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.pcap");
    let o = ferrovs()
        .args(["gen-pcap", "--flows", "10", "--packets", "25", "--size", "128", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let pkts = read_pcap(&path);
    assert_eq!(pkts.len(), 25);
    assert!(pkts.iter().all(|p| p.len() == 128));
    let flows: std::collections::HashSet<&[u8]> = pkts.iter().map(|p| &p[26..30]).collect();
    assert_eq!(flows.len(), 10);
    assert_eq!(pkts[0], pkts[10]);
}

#[test]
fn version_names_the_dpdk_it_was_built_with() {
    let o = ferrovs().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("(DPDK 22.11"), "{o:?}");
}

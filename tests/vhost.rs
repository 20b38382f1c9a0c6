//! vhost-user ports end to end: two `dpdk-testpmd` guests on virtio-user ("containers", see
//! `common::virtio`) attached to ferrovs, one sending, one receiving, in client and server mode;
//! guests killed and restarted under traffic, ferrovs restarted under running guests, two queue
//! pairs over two PMDs, jumbo frames. Every ferrovs run must exit cleanly with every packet
//! accounted for and no mbuf left in use. Also, on net_pcap: frames larger than one packet
//! buffer (dropped as `oversize`) and jumbo frames with `mtu` through copies and rewrites.

mod common;

use std::path::PathBuf;

use common::virtio::{self, Ferrovs, Guest, GuestCounts, GuestSpec, Role, Run, TIMEOUT, VhostPortSpec, wait_until};
use common::{Switch, traffic};

/// Packets ferrovs must have sent to the receiving guest (received, where everything is dropped)
/// before a phase counts as "traffic flows".
const FLOWING: u64 = 5_000;
const RULE: &str = "in_port=vm0,actions=output:vm1";

/// A scenario's directory (sockets, configs, stats) and DPDK file prefix for ferrovs.
struct Scene {
    dir: tempfile::TempDir,
    prefix: String,
    runs: u32,
}

impl Scene {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { dir: tempfile::tempdir().unwrap(), prefix: format!("fvs{}_{n}", std::process::id()), runs: 0 }
    }

    fn sock(&self, port: &str) -> PathBuf {
        self.dir.path().join(format!("{port}.sock"))
    }

    /// Ports vm0 and vm1 in `mode` with `queues` queue pairs.
    fn ports(&self, mode: &'static str, queues: u16, mtu: Option<u16>) -> Vec<VhostPortSpec> {
        ["vm0", "vm1"]
            .iter()
            .map(|name| VhostPortSpec { name: name.to_string(), sock: self.sock(name), mode, queues, mtu })
            .collect()
    }

    fn ferrovs(&mut self, ports: &[VhostPortSpec], pmd_cores: &[usize], rules: &[&str]) -> Ferrovs {
        self.runs += 1;
        let text = virtio::config(ports, pmd_cores, rules, &self.prefix);
        Ferrovs::start(self.dir.path(), &format!("ferrovs{}", self.runs), &text, &self.prefix)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A guest on port `port`'s socket; in server mode (ferrovs a client) it creates the socket.
    fn guest(&self, port: &str, role: Role, server: bool) -> GuestSpec {
        GuestSpec::new(&self.sock(port), role, server)
    }
}

fn start(spec: GuestSpec) -> Guest {
    let mut g = Guest::start(spec.clone()).unwrap_or_else(|e| panic!("{e}"));
    if spec.server {
        g.wait_socket().unwrap_or_else(|e| panic!("{e}"));
    }
    g
}

fn ok<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Both guests up (server guests before ferrovs, client guests after it), traffic flowing from
/// vm0's guest to vm1's; then the sender stops, the receiver and ferrovs after it.
fn forward(mode: &'static str, rules: &[&str]) -> (GuestCounts, GuestCounts, Run) {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let guests_listen = mode == "client";
    let spec_b = scene.guest("vm1", Role::Receive, guests_listen);
    let spec_a = scene.guest("vm0", Role::Send, guests_listen);
    let (mut sw, b, a);
    if guests_listen {
        b = start(spec_b);
        a = start(spec_a);
        sw = scene.ferrovs(&scene.ports(mode, 1, None), &[1], rules);
    } else {
        // A socket file nobody listens on, as a killed switch leaves behind.
        drop(std::os::unix::net::UnixListener::bind(scene.sock("vm0")).unwrap());
        sw = scene.ferrovs(&scene.ports(mode, 1, None), &[1], rules);
        b = start(spec_b);
        a = start(spec_a);
    }
    ok(sw.wait_log("port vm0: link up", 1));
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let a = ok(a.stop());
    ok(sw.wait_log("port vm0: link down", 1));
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    if mode == "server" {
        assert!(!scene.sock("vm0").exists(), "ferrovs removes the sockets it created");
    }
    (a, b, run)
}

/// Stops the receiving guest (on vm1) once ferrovs has sent vm1 nothing for a whole counting
/// period (after the sender stops, a PMD still retries what the full ring refused) and the
/// guest's own statistics show it took all of that from its ring: testpmd counts only what it
/// took, and a guest sharing its CPU with the sender may still be draining. (If it never shows
/// that much, it is stopped after a timeout and the caller's count check says by how much.)
fn stop_receiver(sw: &mut Ferrovs, receiver: Guest) -> GuestCounts {
    let mut last = ok(sw.fresh_port_counts("vm1")).1;
    loop {
        let now = ok(sw.fresh_port_counts("vm1")).1;
        if now == last {
            break;
        }
        last = now;
    }
    let _ = wait_until("the receiver to take what ferrovs sent it", TIMEOUT, || {
        receiver.printed_rx_packets().is_some_and(|n| n >= last)
    });
    ok(receiver.stop())
}

/// Both PMDs received some of the traffic.
fn assert_every_pmd_received(run: &Run) {
    let pmds = run.pmd_rx();
    assert!(pmds.len() == 2 && pmds.iter().all(|&n| n > 0), "rx per PMD {pmds:?}\n{}", run.log);
}

/// What the receiver got is exactly what ferrovs says it sent it, and ferrovs received no more
/// than the sender sent.
fn assert_delivered(a: &GuestCounts, b: &GuestCounts, run: &Run) {
    let ctx = &run.log;
    assert!(b.rx_packets > FLOWING, "receiver got {} packets\n{ctx}", b.rx_packets);
    assert_eq!(b.rx_packets, run.port_stat("vm1", "tx_packets"), "receiver vs ferrovs's vm1 tx\n{ctx}");
    let rx = run.port_stat("vm0", "rx_packets");
    assert!(rx <= a.tx_packets && rx >= b.rx_packets, "sender {} ferrovs rx {rx}\n{ctx}", a.tx_packets);
    assert_eq!(run.port_stat("vm1", "rx_packets"), 0, "the receiver sent nothing\n{ctx}");
}

#[test]
fn client_mode_forwards_from_guest_to_guest() {
    let (a, b, run) = forward("client", &[RULE]);
    assert_delivered(&a, &b, &run);
}

#[test]
fn server_mode_forwards_from_guest_to_guest() {
    let (a, b, run) = forward("server", &[RULE]);
    assert_delivered(&a, &b, &run);
    assert!(run.log.contains("removing the stale socket"), "a killed switch's socket is reused\n{}", run.log);
}

#[test]
fn a_server_socket_someone_listens_on_is_an_error() {
    let scene = Scene::new();
    let sock = scene.sock("vm0");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let config = scene.dir.path().join("ferrovs.toml");
    std::fs::write(&config, virtio::config(&scene.ports("server", 1, None), &[1], &[], &scene.prefix)).unwrap();
    let out = common::ferrovs().args(["run", "--config"]).arg(&config).output().unwrap();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", scene.prefix));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let want = format!("error: port vm0: another process listens on {}", sock.display());
    assert!(stderr.lines().any(|l| l == want), "want {want:?} in\n{stderr}");
}

#[test]
fn normal_without_rules_floods_to_the_other_guest() {
    // The sender's destination is never learned (the receiver sends nothing): every frame floods.
    let (a, b, run) = forward("client", &[]);
    assert_delivered(&a, &b, &run);
    assert!(run.stats["mac_table"]["entries"].as_array().unwrap().len() == 1, "the sender's MAC is learned");
}

#[test]
fn a_receiving_guest_killed_and_restarted_under_traffic() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let b = start(scene.guest("vm1", Role::Receive, true));
    let a = start(scene.guest("vm0", Role::Send, true));
    let mut sw = scene.ferrovs(&scene.ports("client", 1, None), &[1], &[RULE]);
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    b.kill();
    ok(sw.wait_log("port vm1: link down", 1));
    // Traffic keeps coming, with nowhere to go.
    let (_, before) = ok(sw.fresh_port_counts("vm1"));
    assert!(sw.running(), "ferrovs survives the guest\n{}", sw.log());
    // The same socket again: ferrovs (a client) reconnects by itself.
    let b2 = start(scene.guest("vm1", Role::Receive, true));
    ok(sw.wait_log("port vm1: link up", 2));
    ok(sw.wait_tx_above("vm1", before + FLOWING));
    ok(a.stop());
    let b2 = stop_receiver(&mut sw, b2);
    ok(sw.wait_log("port vm1: link down", 2));
    let run = ok(sw.stop());
    assert!(run.drops("port_down") > 0, "drops while vm1 was down\n{}", run.log);
    assert_eq!(run.link_changes("vm1"), (2, 2), "vm1 up at start and after the restart\n{}", run.log);
    assert!(b2.rx_packets > FLOWING);
}

#[test]
fn a_sending_guest_killed_and_restarted_in_server_mode() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let mut sw = scene.ferrovs(&scene.ports("server", 1, None), &[1], &[RULE]);
    let b = start(scene.guest("vm1", Role::Receive, false));
    let a = start(scene.guest("vm0", Role::Send, false));
    ok(sw.wait_log("port vm0: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    a.kill();
    ok(sw.wait_log("port vm0: link down", 1));
    // Nothing more comes.
    let (_, before) = ok(sw.fresh_port_counts("vm1"));
    // The guest comes back to the socket ferrovs still listens on.
    let a2 = start(scene.guest("vm0", Role::Send, false));
    ok(sw.wait_log("port vm0: link up", 2));
    ok(sw.wait_tx_above("vm1", before + FLOWING));
    let a2 = ok(a2.stop());
    ok(sw.wait_log("port vm0: link down", 2));
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    assert_eq!(run.link_changes("vm0"), (2, 2), "vm0 up twice, down at each stop\n{}", run.log);
    assert!(a2.tx_packets > FLOWING, "the second sender's packets went through");
    assert_eq!(b.rx_packets, run.port_stat("vm1", "tx_packets"), "the receiver got all ferrovs sent it");
}

#[test]
fn restarting_ferrovs_in_client_mode_reconnects_to_running_guests() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let b = start(scene.guest("vm1", Role::Receive, true));
    let a = start(scene.guest("vm0", Role::Send, true));
    let ports = scene.ports("client", 1, None);
    let mut sw = scene.ferrovs(&ports, &[1], &[RULE]);
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let first = ok(sw.stop());
    let sent_by_first = first.port_stat("vm1", "tx_packets");
    // The guests keep running; a new ferrovs connects to their sockets.
    let mut sw = scene.ferrovs(&ports, &[1], &[RULE]);
    ok(sw.wait_log("port vm0: link up", 1));
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    ok(a.stop());
    let b = stop_receiver(&mut sw, b);
    let second = ok(sw.stop());
    let sent_by_second = second.port_stat("vm1", "tx_packets");
    assert!(sent_by_second > FLOWING, "{}", second.log);
    assert!(b.rx_packets > sent_by_first && b.rx_packets <= sent_by_first + sent_by_second);
}

#[test]
fn a_killed_ferrovs_in_server_mode_is_replaced_and_new_guests_connect() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let ports = scene.ports("server", 1, None);
    let mut sw = scene.ferrovs(&ports, &[1], &[RULE]);
    let b = start(scene.guest("vm1", Role::Receive, false));
    let a = start(scene.guest("vm0", Role::Send, false));
    ok(sw.wait_tx_above("vm1", FLOWING));
    drop(sw); // SIGKILL, under traffic
    assert!(scene.sock("vm0").exists() && scene.sock("vm1").exists(), "a killed switch leaves its sockets");
    // A virtio-user client does not reconnect (QEMU does with `reconnect=`): the guests restart.
    a.kill();
    b.kill();
    let mut sw = scene.ferrovs(&ports, &[1], &[RULE]);
    let b = start(scene.guest("vm1", Role::Receive, false));
    let a = start(scene.guest("vm0", Role::Send, false));
    ok(sw.wait_log("port vm0: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let a = ok(a.stop());
    ok(sw.wait_log("port vm0: link down", 1));
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    assert_delivered(&a, &b, &run);
    assert_eq!(run.log.matches("removing the stale socket").count(), 2, "{}", run.log);
    assert!(!scene.sock("vm0").exists(), "the new switch removes its sockets at exit");
}

#[test]
fn two_queue_pairs_spread_over_two_pmds() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let b = start(scene.guest("vm1", Role::Receive, true).queues(2));
    let a = start(scene.guest("vm0", Role::Send, true).queues(2));
    // Two PMDs sharing CPU 1: vm0's queue 0 goes to one, its queue 1 to the other.
    let mut sw = scene.ferrovs(&scene.ports("client", 2, None), &[1, 1], &[RULE]);
    ok(sw.wait_log("port vm0: rx queue 1 enabled by the guest", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let a = ok(a.stop());
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    assert_delivered(&a, &b, &run);
    let queues = run.rx_queue_packets("vm0");
    assert!(queues.len() == 2 && queues.iter().all(|&n| n > 0), "vm0 rx per queue {queues:?}\n{}", run.log);
    assert_every_pmd_received(&run);
}

#[test]
fn a_guest_enabling_fewer_queue_pairs_gets_what_every_pmd_sends() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    // vm1's guest enables one of the port's two pairs (as a one-vCPU Linux guest does); vm0's
    // guest sends on both, one per PMD, so both PMDs transmit to vm1: PMD 1's queue 1 must be
    // sent on the guest's queue 0, not dropped.
    let b = start(scene.guest("vm1", Role::Receive, true));
    let a = start(scene.guest("vm0", Role::Send, true).queues(2));
    let mut sw = scene.ferrovs(&scene.ports("client", 2, None), &[1, 1], &[RULE]);
    ok(sw.wait_log("port vm1: transmit queue 1 sends on the guest's queue 0", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let a = ok(a.stop());
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    assert_delivered(&a, &b, &run);
    assert_every_pmd_received(&run);
    // Without the remapping PMD 1 sends vm1 nothing (its transmit queue is disabled); with it,
    // each PMD sends what the receiver's one ring takes (how much depends on how the receiver
    // and the sender share their CPU: 86 % of it on a quiet machine, 10 % on a busy one).
    let (rx, tx) = (run.pmd_rx(), run.pmd_tx());
    assert!(tx.iter().zip(&rx).all(|(&t, &r)| t * 50 >= r), "per PMD: sent {tx:?} of {rx:?} to vm1\n{}", run.log);
}

#[test]
fn jumbo_frames_pass_between_guests_with_mtu() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let b = start(scene.guest("vm1", Role::Receive, true));
    let a = start(scene.guest("vm0", Role::Send, true).frame_len(8000));
    let mut sw = scene.ferrovs(&scene.ports("client", 1, Some(9000)), &[1], &[RULE]);
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_tx_above("vm1", FLOWING));
    let a = ok(a.stop());
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    assert_delivered(&a, &b, &run);
    assert_eq!(run.drops("oversize"), 0, "{}", run.log);
    assert_eq!(b.rx_bytes, 8000 * b.rx_packets_at_bytes, "every frame arrived whole");
}

#[test]
fn frames_larger_than_a_buffer_are_dropped_as_oversize() {
    let _lock = virtio::lock();
    let mut scene = Scene::new();
    let b = start(scene.guest("vm1", Role::Receive, true));
    let a = start(scene.guest("vm0", Role::Send, true).frame_len(3000));
    let mut sw = scene.ferrovs(&scene.ports("client", 1, None), &[1], &[RULE]);
    ok(sw.wait_log("port vm0: link up", 1));
    ok(sw.wait_log("port vm1: link up", 1));
    ok(sw.wait_rx_above("vm0", FLOWING));
    ok(a.stop());
    ok(sw.wait_log("port vm0: link down", 1));
    let b = stop_receiver(&mut sw, b);
    let run = ok(sw.stop());
    let rx = run.total("rx_packets");
    assert!(rx > 0, "{}", run.log);
    assert_eq!(run.drops("oversize"), rx, "every 3000-byte frame is a chain of 2 KB buffers\n{}", run.log);
    assert_eq!(b.rx_packets, 0);
}

// ---------------------------------------------------------------------------------------------
// Chains and jumbo frames on net_pcap (no guests needed)

fn jumbo(src: u16, len: usize) -> Vec<u8> {
    let f = traffic::udp4(src, 2, 1000 + src, len - 42);
    assert_eq!(f.len(), len);
    f
}

#[test]
fn pcap_frames_larger_than_a_buffer_are_dropped_as_oversize() {
    let small = traffic::mixed(1, 40);
    let mut input = small.clone();
    input.insert(10, jumbo(3, 3000));
    input.insert(25, jumbo(4, 9000));
    let out = Switch::new().port("p0", input).port("p1", vec![]).rules(&["in_port=p0,actions=output:p1"]).run();
    out.assert_output("p1", &small);
    assert_eq!(out.drops("oversize"), 2);
}

#[test]
fn pcap_jumbo_frames_with_mtu_are_copied_and_rewritten_whole() {
    let frames: Vec<Vec<u8>> = (0..20).map(|i| jumbo(i, 1000 + 400 * usize::from(i))).collect();
    let out = Switch::new()
        .port_with("p0", frames.clone(), "mtu = 9000\n")
        .port("p1", vec![])
        .port("p2", vec![])
        .rules(&["in_port=p0,actions=output:p1,mod_dl_dst:02:00:00:00:99:99,output:p2"])
        .run();
    out.assert_output("p1", &frames);
    let rewritten: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[..6].copy_from_slice(&[2, 0, 0, 0, 0x99, 0x99]);
            f
        })
        .collect();
    out.assert_output("p2", &rewritten);
    assert_eq!(out.drops("oversize"), 0);
    assert!(out.log.contains("mbufs of 9154 B"), "buffers sized for the mtu\n{}", out.log);
}

//! The safe DPDK layer against a real EAL (no hugepages needed): ownership of mbufs and bursts,
//! port and queue life cycles, and the mempool's in-use count returning to its baseline after
//! every step. EAL initialises once per process, so this is one test walking through the steps.

use std::sync::Arc;

use ferrovs_switch::dpdk::{
    Burst, DEFAULT_DATA_ROOM, Device, Eal, EalError, MAX_BURST, Mempool, Port, PortError, PortSetup, VHOST_DRIVER,
    VhostUserPort,
};

fn eal() -> Eal {
    let prefix = format!("ferrovs-test-{}", std::process::id());
    let eal = Eal::init(&[
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "--lcores=0@0,1@0", // a worker lcore sharing CPU 0 with the main one
        "--log-level=lib.eal:error",
        "--log-level=lib.vhost.config:warning",
        &format!("--file-prefix={prefix}"),
    ])
    .expect("EAL starts without hugepages");
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    eal
}

#[test]
fn safe_layer_frees_every_mbuf_exactly_once() {
    let eal = eal();
    assert!(matches!(Eal::init(&["--no-huge"]), Err(EalError::AlreadyInitialised)));
    let pool = Arc::new(Mempool::new(&eal, "test_pool", 4095, 32, DEFAULT_DATA_ROOM, None).unwrap());
    let base = pool.in_use();
    assert_eq!(base, 0);

    mbufs_are_freed_once(&pool);
    assert_eq!(pool.in_use(), base, "after single mbufs");

    bursts_free_what_they_hold(&pool);
    assert_eq!(pool.in_use(), base, "after bursts");

    ports_hand_out_queues_once_and_return_their_mbufs(&eal, &pool);
    assert_eq!(pool.in_use(), base, "after the port test");

    chains_are_dropped_whole(&eal, &pool);
    assert_eq!(pool.in_use(), base, "after the chain test");

    vhost_ports_wait_for_a_guest(&eal, &pool);
    vhost_library_ports_wait_for_a_guest(&eal, &pool);
    assert_eq!(pool.in_use(), base, "after the vhost test");

    lcore_jobs_return_values_and_panics(&eal);
}

fn mbufs_are_freed_once(pool: &Mempool) {
    let mut m = pool.alloc().unwrap();
    assert_eq!(pool.in_use(), 1);
    assert!(m.is_empty());
    m.append(b"hello, switch").unwrap();
    assert_eq!(m.data(), b"hello, switch");
    m.data_mut().unwrap()[0] = b'H';
    assert_eq!(&m.data()[..5], b"Hello");
    assert!(m.append(&vec![0u8; 70_000]).is_err(), "no room for a jumbo append");

    let copy = m.share();
    assert_eq!(pool.in_use(), 1, "sharing does not allocate");
    assert!(m.data_mut().is_none() && !copy.is_writable(), "shared buffers are read-only");
    assert_eq!(copy.data(), m.data());
    drop(m);
    assert_eq!(pool.in_use(), 1, "one owner left");
    let mut last = copy;
    assert!(last.data_mut().is_some(), "sole owner may write again");
    drop(last);
    assert_eq!(pool.in_use(), 0);
}

fn bursts_free_what_they_hold(pool: &Mempool) {
    let mut burst = Burst::new();
    for i in 0..MAX_BURST {
        let mut m = pool.alloc().unwrap();
        m.append(&[i as u8; 60]).unwrap();
        burst.push(m).unwrap();
    }
    assert!(burst.is_full());
    let extra = pool.alloc().unwrap();
    let extra = burst.push(extra).unwrap_err();
    drop(extra);
    assert_eq!(pool.in_use() as usize, MAX_BURST);

    // Take a few out in order; the rest are freed when the drain drops.
    let firsts: Vec<_> = burst.drain().take(3).collect();
    assert!(burst.is_empty());
    assert_eq!(firsts.iter().map(|m| m.data()[0]).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(pool.in_use(), 3);
    drop(firsts);

    let mut burst = Burst::new();
    for _ in 0..10 {
        burst.push(pool.alloc().unwrap()).unwrap();
    }
    burst.clear();
    assert_eq!(pool.in_use(), 0);
    for _ in 0..10 {
        burst.push(pool.alloc().unwrap()).unwrap();
    }
    drop(burst); // frees in bulk
    assert_eq!(pool.in_use(), 0);
}

fn ports_hand_out_queues_once_and_return_their_mbufs(eal: &Eal, pool: &Arc<Mempool>) {
    // net_null without no-rx produces packets on every rx burst: a source we can poll.
    let mut src = Port::attach(eal, "src", "net_null0,size=64").unwrap();
    let mut dst = Port::attach(eal, "dst", "net_null1,no-rx=1").unwrap();
    assert_eq!(src.info().unwrap().driver, "net_null");
    let setup = PortSetup { rx_queues: 1, tx_queues: 1, rx_desc: 256, tx_desc: 256, mtu: None };
    for port in [&mut src, &mut dst] {
        port.configure(&setup, pool).unwrap();
        port.start().unwrap();
    }
    let too_many = PortSetup { rx_queues: 4096, ..setup.clone() };
    assert!(matches!(
        dst.configure(&too_many, pool),
        Err(PortError::TooManyQueues { .. }) | Err(PortError::Call { .. })
    ));

    let mut rxq = src.rx_queue(0).unwrap();
    assert!(matches!(src.rx_queue(0), Err(PortError::QueueUnavailable { .. })));
    let mut txq = dst.tx_queue(0, 1).unwrap().pop().unwrap();
    assert!(!txq.is_shared());

    let mut burst = Burst::new();
    let n = rxq.recv(&mut burst, 32);
    assert_eq!(n, 32);
    assert!(burst.as_slice().iter().all(|m| m.len() == 64));
    assert_eq!(pool.in_use(), 32);
    let sent = txq.send(&mut burst);
    assert_eq!(sent, 32);
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 0, "net_null frees what it transmits");

    rxq.recv(&mut burst, 8);
    assert_eq!(burst.len(), 8);
    drop(burst);

    assert!(matches!(src.stop(), Err(PortError::QueuesInUse { count: 1, .. })), "stop refused while polled");
    drop(rxq);
    drop(txq);
    assert_eq!(src.stats().unwrap().rx_packets, 40);
    assert_eq!(dst.stats().unwrap().tx_packets, 32);
    src.close().unwrap();
    dst.close().unwrap();
    // The same devargs can be probed again after close.
    let again = Port::attach(eal, "again", "net_null0,size=64").unwrap();
    again.close().unwrap();
}

/// A frame bigger than one buffer arrives as a chain (net_pcap reads it into several mbufs);
/// `drop_chained` frees the whole chain and keeps the other packets in order.
fn chains_are_dropped_whole(eal: &Eal, pool: &Arc<Mempool>) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let dir = std::env::temp_dir().join(format!("ferrovs-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&input).unwrap()).unwrap();
    for len in [60usize, 5000, 64] {
        let frame = vec![len as u8; len];
        w.write_packet(&PcapPacket::new(std::time::Duration::ZERO, len as u32, &frame)).unwrap();
    }
    drop(w);
    let mut port = Port::attach(eal, "pcap", &format!("net_pcap5,rx_pcap={}", input.display())).unwrap();
    let setup = PortSetup { rx_queues: 1, tx_queues: 1, rx_desc: 64, tx_desc: 64, mtu: None };
    port.configure(&setup, pool).unwrap();
    port.start().unwrap();
    let mut rxq = port.rx_queue(0).unwrap();
    let mut burst = Burst::new();
    while burst.len() < 3 {
        rxq.recv(&mut burst, 32);
    }
    let segments: Vec<u16> = burst.as_slice().iter().map(|m| m.segments()).collect();
    assert_eq!(segments, [1, 3, 1], "5000 bytes take three 2 KB buffers");
    assert_eq!(pool.in_use(), 5);
    assert_eq!(burst.drop_chained(), 1);
    assert_eq!(pool.in_use(), 2, "the chain is freed whole");
    let lens: Vec<usize> = burst.as_slice().iter().map(|m| m.len()).collect();
    assert_eq!(lens, [60, 64], "the others stay, in order");
    assert_eq!(burst.drop_chained(), 0);
    drop(burst);
    drop(rxq);
    port.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A vhost-user port without a guest: link down, no queue events, the socket it listens on
/// removed when it closes.
fn vhost_ports_wait_for_a_guest(eal: &Eal, pool: &Arc<Mempool>) {
    let sock = std::env::temp_dir().join(format!("ferrovs-vhost-{}.sock", std::process::id()));
    let devargs = format!("net_vhost7,iface={},queues=2,client=0", sock.display());
    let mut port = Port::attach(eal, "vm", &devargs).unwrap();
    assert_eq!(port.info().unwrap().driver, "net_vhost");
    let setup = PortSetup { rx_queues: 2, tx_queues: 2, rx_desc: 64, tx_desc: 64, mtu: Some(9000) };
    port.configure(&setup, pool).unwrap();
    port.start().unwrap();
    assert!(sock.exists(), "the server socket is listening");
    assert!(!port.link().unwrap().up, "no guest, no link");
    assert_eq!(port.mtu().unwrap(), 9000);
    assert_eq!(port.vhost_queue_event(), None);
    assert_eq!(port.stats().unwrap().rx_queue_packets, [0, 0]);
    port.close().unwrap();
    assert!(!sock.exists(), "closing removes the socket");
    let null = Port::attach(eal, "null", "net_null3").unwrap();
    assert_eq!(null.vhost_queue_event(), None, "other drivers have no queue events");
    null.close().unwrap();
}

/// The same on the vhost library directly (what `vhost = { ... }` ports use): link down and
/// nothing received without a guest, one socket per path, stop refused while a queue handle
/// lives, the socket removed when it stops.
fn vhost_library_ports_wait_for_a_guest(eal: &Eal, pool: &Arc<Mempool>) {
    let sock = std::env::temp_dir().join(format!("ferrovs-vhostlib-{}.sock", std::process::id()));
    let mut port = Device::Vhost(VhostUserPort::new(eal, "vm", &sock, false, 2).unwrap());
    assert_eq!(port.info().unwrap().driver, VHOST_DRIVER);
    assert!(port.is_vhost());
    let too_many = PortSetup { rx_queues: 3, tx_queues: 1, rx_desc: 64, tx_desc: 64, mtu: None };
    assert!(matches!(port.configure(&too_many, pool), Err(PortError::TooManyQueues { asked: 3, max: 2, .. })));
    let setup = PortSetup { rx_queues: 2, tx_queues: 1, rx_desc: 64, tx_desc: 64, mtu: Some(9000) };
    port.configure(&setup, pool).unwrap();
    port.start().unwrap();
    assert!(sock.exists(), "the server socket is listening");
    let mut twin = VhostUserPort::new(eal, "vm-twin", &sock, false, 1).unwrap();
    assert!(twin.start().is_err(), "one port per socket");
    drop(twin);
    assert!(sock.exists(), "the refused twin leaves the first port's socket alone");
    assert!(!port.link().unwrap().up, "no guest, no link");
    assert_eq!(port.mtu().unwrap(), 9000);
    assert_eq!(port.mac().unwrap(), [0; 6]);
    assert_eq!(port.vhost_queue_event(), None);
    let mut rxq = port.rx_queue(1).unwrap();
    assert!(port.rx_queue(1).is_err(), "a queue is handed out once");
    let mut burst = Burst::new();
    assert_eq!(rxq.recv(&mut burst, MAX_BURST), 0, "no guest, nothing received");
    let mut txq = port.tx_queue(0, 1).unwrap().pop().unwrap();
    burst.push(pool.alloc().unwrap()).unwrap();
    assert_eq!(txq.send(&mut burst), 0, "no guest, nothing sent; the packet stays ours");
    assert_eq!(burst.len(), 1);
    drop(burst);
    assert!(matches!(port.stop(), Err(PortError::QueuesInUse { count: 2, .. })));
    drop((rxq, txq));
    let stats = port.stats().unwrap();
    assert_eq!((stats.rx_packets, stats.tx_packets, stats.rx_queue_packets), (0, 0, vec![0, 0]));
    port.close().unwrap();
    assert!(!sock.exists(), "closing removes the socket");
}

fn lcore_jobs_return_values_and_panics(eal: &Eal) {
    assert_eq!(eal.main_lcore(), 0);
    assert_eq!(eal.worker_lcores(), [1]);
    let job = eal.launch(1, || 6 * 7).unwrap();
    assert_eq!(job.lcore(), 1);
    assert_eq!(job.join().unwrap(), 42);
    let quiet = std::panic::take_hook(); // the panic below is expected: keep the log clean
    std::panic::set_hook(Box::new(|_| {}));
    let job = eal.launch(1, || -> u32 { panic!("pmd exploded") }).unwrap();
    let err = job.join().unwrap_err();
    std::panic::set_hook(quiet);
    assert_eq!((err.lcore, err.message.as_str()), (1, "pmd exploded"));
    assert!(matches!(eal.launch(7, || 0), Err(EalError::Launch { lcore: 7, .. })));
    // From a thread EAL does not know, launching is refused rather than undefined.
    let other = eal.clone();
    let refused = std::thread::spawn(move || matches!(other.launch(1, || 0), Err(EalError::NotMainLcore)));
    assert!(refused.join().unwrap());
}

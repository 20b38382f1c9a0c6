//! The kernel side of a DPDK `net_tap` port, driven through a raw `AF_PACKET` socket: what the
//! test sends on the interface is what the switch receives on that port, and what the interface
//! receives is what the switch transmitted there.
//!
//! A collector thread reads the socket from [`Tap::open`] on, so nothing the switch sends is lost
//! between test steps. The kernel strips 802.1Q/802.1ad tags on receive and reports them in
//! `tpacket_auxdata`; the collector puts them back after the MAC addresses (as libpcap does), so
//! captures are the bytes the switch sent.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Tap::open`] waits for the interface to appear.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);
/// The socket's receive buffer: room for a few thousand frames between drains.
const RCVBUF: libc::c_int = 8 << 20;
/// The largest frame read (an MTU-sized frame is far smaller).
const MAX_FRAME: usize = 65536;
/// How often the collector checks whether it should stop.
const POLL_MS: libc::c_int = 20;
/// [`Tap::recv_all`] returns after this long even if frames keep arriving (a forwarding loop).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// What the collector has read so far.
#[derive(Default)]
struct Inbox {
    frames: Vec<(Instant, Vec<u8>)>,
    last_arrival: Option<Instant>,
    errors: Vec<String>,
}

/// A kernel interface opened for raw frame I/O; dropping it stops the collector and closes the
/// socket.
pub struct Tap {
    name: String,
    sock: Arc<OwnedFd>,
    inbox: Arc<Mutex<Inbox>>,
    stop: Arc<AtomicBool>,
    collector: Option<JoinHandle<()>>,
}

impl Tap {
    /// Waits (up to 10 s) for interface `iface` to exist, disables IPv6 on it (so the kernel sends
    /// no router solicitations, MLD reports or neighbour discovery), sets it up if it is down, and
    /// starts collecting every frame it receives.
    pub fn open(iface: &str) -> Result<Self, String> {
        wait_for_interface(iface)?;
        disable_ipv6(iface)?;
        set_up(iface)?;
        let ifindex = ifindex(iface)?;
        let sock = Arc::new(packet_socket()?);
        bind(&sock, ifindex).map_err(|e| format!("{iface}: bind: {e}"))?;
        setsockopt_int(&sock, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(|e| format!("{iface}: PACKET_AUXDATA: {e}"))?;
        // SO_RCVBUFFORCE ignores rmem_max (we run as root); SO_RCVBUF is capped by it.
        setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF)
            .or_else(|_| setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF))
            .map_err(|e| format!("{iface}: SO_RCVBUF: {e}"))?;
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (sock, inbox, stop) = (Arc::clone(&sock), Arc::clone(&inbox), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("tap-{iface}"))
                .spawn(move || collect(&sock, &inbox, &stop))
                .map_err(|e| format!("{iface}: cannot start the collector: {e}"))?
        };
        Ok(Self { name: iface.to_string(), sock, inbox, stop, collector: Some(collector) })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one frame out of the interface (into the switch's port).
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match send_frame(&self.sock, frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => return Err(format!("{}: sent {n} of {} bytes", self.name, frame.len())),
                // The qdisc or socket buffer is full: the switch is behind, try again shortly.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(format!("{}: send: {e}", self.name)),
            }
        }
    }

    /// Every frame the interface received since the last call (what the switch transmitted on the
    /// port), in order, once nothing has arrived for `quiet`. Our own sends are not included.
    pub fn recv_all(&self, quiet: Duration) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.recv_all_timed(quiet)?.into_iter().map(|(_, f)| f).collect())
    }

    /// [`Tap::recv_all`], with the time each frame was read.
    pub fn recv_all_timed(&self, quiet: Duration) -> Result<Vec<(Instant, Vec<u8>)>, String> {
        let start = Instant::now();
        loop {
            {
                let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
                if !inbox.errors.is_empty() {
                    return Err(format!("{}: {}", self.name, inbox.errors.join("; ")));
                }
                let since = inbox.last_arrival.map_or(start, |t| t.max(start));
                if since.elapsed() >= quiet || start.elapsed() >= DRAIN_LIMIT {
                    return Ok(std::mem::take(&mut inbox.frames));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.collector.take() {
            let _ = t.join();
        }
    }
}

/// While alive, interfaces created on this machine start with IPv6 disabled
/// (`net.ipv6.conf.default.disable_ipv6 = 1`; the old value comes back on drop). A new tap
/// then never sends a router solicitation, MLD report or DAD probe into the switch, where it
/// would be learned like any host; disabling IPv6 per interface once it appears loses that race
/// under load. Take it while holding the machine lock (`ovs::MachineLock`), which serialises
/// every test that creates interfaces.
pub struct Ipv6OffForNewInterfaces {
    old: Option<String>,
}

const DEFAULT_DISABLE_IPV6: &str = "/proc/sys/net/ipv6/conf/default/disable_ipv6";

impl Ipv6OffForNewInterfaces {
    pub fn take() -> Result<Self, String> {
        let Ok(old) = std::fs::read_to_string(DEFAULT_DISABLE_IPV6) else {
            return Ok(Self { old: None }); // IPv6 is off in this kernel
        };
        std::fs::write(DEFAULT_DISABLE_IPV6, "1").map_err(|e| format!("{DEFAULT_DISABLE_IPV6}: {e}"))?;
        Ok(Self { old: Some(old) })
    }
}

impl Drop for Ipv6OffForNewInterfaces {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            let _ = std::fs::write(DEFAULT_DISABLE_IPV6, old.trim());
        }
    }
}

fn wait_for_interface(iface: &str) -> Result<(), String> {
    let path = format!("/sys/class/net/{iface}");
    let deadline = Instant::now() + APPEAR_TIMEOUT;
    while !Path::new(&path).exists() {
        if Instant::now() > deadline {
            return Err(format!("interface {iface} did not appear within {APPEAR_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn disable_ipv6(iface: &str) -> Result<(), String> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    if !Path::new(&path).exists() {
        return Ok(()); // IPv6 is off in this kernel
    }
    std::fs::write(&path, "1").map_err(|e| format!("{path}: {e}"))
}

fn set_up(iface: &str) -> Result<(), String> {
    let flags =
        std::fs::read_to_string(format!("/sys/class/net/{iface}/flags")).map_err(|e| format!("{iface}: {e}"))?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).map_err(|e| format!("{iface}: {e}"))?;
    if flags & libc::IFF_UP as u32 != 0 {
        return Ok(());
    }
    let status = std::process::Command::new("ip")
        .args(["link", "set", "dev", iface, "up"])
        .status()
        .map_err(|e| format!("ip link set {iface} up: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("ip link set {iface} up: {status}")) }
}

fn ifindex(iface: &str) -> Result<libc::c_uint, String> {
    let name = CString::new(iface).map_err(|e| format!("{iface}: {e}"))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 { Err(format!("{iface}: {}", std::io::Error::last_os_error())) } else { Ok(index) }
}

/// A raw packet socket that receives nothing until bound (protocol 0), so no frame of another
/// interface slips in between `socket` and `bind`.
fn packet_socket() -> Result<OwnedFd, String> {
    // SAFETY: plain system call with constant arguments; no pointers involved.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket(AF_PACKET): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by socket(), is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

fn bind(sock: &OwnedFd, ifindex: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = eth_p_all();
    addr.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes that outlives the call.
    let rc = unsafe { libc::bind(sock.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn setsockopt_int(sock: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a valid c_int of `len` bytes that outlives the call.
    let rc = unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, std::ptr::from_ref(&value).cast(), len) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn send_frame(sock: &OwnedFd, frame: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `frame` is a valid buffer of `frame.len()` bytes for the duration of the call.
    let n = unsafe { libc::send(sock.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Waits up to `POLL_MS` for the socket to become readable.
fn wait_readable(fd: RawFd) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid pollfd, as the count says, and outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(rc > 0) }
}

/// The collector thread: reads frames until told to stop.
fn collect(sock: &OwnedFd, inbox: &Mutex<Inbox>, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        match wait_readable(sock.as_raw_fd()) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return note_error(inbox, format!("poll: {e}")),
        }
        loop {
            match recv_frame(sock, &mut buf) {
                Ok(Some(Received::Frame(frame))) => {
                    let now = Instant::now();
                    let mut inbox = inbox.lock().unwrap_or_else(|e| e.into_inner());
                    inbox.frames.push((now, frame));
                    inbox.last_arrival = Some(now);
                }
                Ok(Some(Received::Outgoing)) => {}
                Ok(None) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The interface went down (the switch is stopping): nothing more will come.
                Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => return,
                Err(e) => return note_error(inbox, format!("recvmsg: {e}")),
            }
        }
    }
}

fn note_error(inbox: &Mutex<Inbox>, error: String) {
    inbox.lock().unwrap_or_else(|e| e.into_inner()).errors.push(error);
}

enum Received {
    /// A frame the interface received, VLAN tag restored.
    Frame(Vec<u8>),
    /// A frame the interface sent (ours).
    Outgoing,
}

/// The VLAN tag the kernel stripped from a received frame, as (TPID, TCI).
#[derive(Clone, Copy)]
struct StrippedTag(u16, u16);

/// Reads one frame without blocking; `None` when there is none.
fn recv_frame(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<Received>> {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    // Control messages need cmsghdr alignment: u64s give it.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut from).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` (address, one iovec over `buf`, control buffer) is valid for
    // the lengths it states and outlives the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    if from.sll_pkttype == libc::PACKET_OUTGOING {
        return Ok(Some(Received::Outgoing));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(std::io::Error::other(format!("a frame longer than {} bytes was truncated", buf.len())));
    }
    let data = &buf[..n as usize];
    let frame = match stripped_tag(&msg) {
        Some(tag) if data.len() >= 12 => restore_tag(data, tag),
        _ => data.to_vec(),
    };
    Ok(Some(Received::Frame(frame)))
}

/// The tag the kernel stripped, from the `PACKET_AUXDATA` control message of `msg`.
fn stripped_tag(msg: &libc::msghdr) -> Option<StrippedTag> {
    // SAFETY: `msg` was filled in by recvmsg: its control pointer and length describe the
    // control messages the kernel wrote into our (still live) buffer.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within the control buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_PACKET && hdr.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: a PACKET_AUXDATA message carries one tpacket_auxdata; the data may be
            // unaligned within the buffer, hence read_unaligned.
            let aux: libc::tpacket_auxdata =
                unsafe { libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>().read_unaligned() };
            return tag_of(&aux);
        }
        // SAFETY: `cmsg` is a valid header within `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

fn tag_of(aux: &libc::tpacket_auxdata) -> Option<StrippedTag> {
    if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 { aux.tp_vlan_tpid } else { 0x8100 };
    Some(StrippedTag(tpid, aux.tp_vlan_tci))
}

/// `data` with `tag` put back after the destination and source MAC addresses.
fn restore_tag(data: &[u8], StrippedTag(tpid, tci): StrippedTag) -> Vec<u8> {
    let mut frame = Vec::with_capacity(data.len() + 4);
    frame.extend_from_slice(&data[..12]);
    frame.extend_from_slice(&tpid.to_be_bytes());
    frame.extend_from_slice(&tci.to_be_bytes());
    frame.extend_from_slice(&data[12..]);
    frame
}

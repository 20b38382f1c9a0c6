//! `vhost = { path, mode, queues }`: a vhost-user port (a VM or a virtio-user container on a Unix
//! socket), checked here. The switch runs it on DPDK's vhost library directly (see the switch's
//! `dpdk/vhost.rs` for why not the `net_vhost` driver); the equivalent `net_vhost` devargs are
//! derived too, so the checks that apply to devargs (paths, duplicates) apply to both spellings.

use std::path::{Path, PathBuf};

use crate::schema::RawVhost;
use crate::validate::check_range;
use crate::{ConfigError, Devargs};

/// Most queue pairs a vhost port may have.
pub const VHOST_MAX_QUEUES: u16 = 32;
/// Longest Unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Characters DPDK's devargs syntax gives a meaning (`key=value,key=value`, `[list]`).
const DEVARGS_SPECIAL: &[char] = &[',', '=', '[', ']'];

/// Who creates the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhostMode {
    /// The guest (QEMU, or virtio-user with `server=1`) listens; the switch connects, and
    /// reconnects by itself after either side restarts. Open vSwitch's `dpdkvhostuserclient`.
    Client,
    /// The switch listens; the guest connects. Restarting the switch breaks the guest's link
    /// until the guest reconnects (QEMU does only with `reconnect=`).
    Server,
}

impl VhostMode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            VhostMode::Client => "client",
            VhostMode::Server => "server",
        }
    }
}

/// A validated `vhost = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostPort {
    /// The socket, absolute.
    pub path: PathBuf,
    /// Who creates the socket.
    pub mode: VhostMode,
    /// Queue pairs (the port's receive and transmit queues).
    pub queues: u16,
}

impl VhostPort {
    /// The `net_vhost` devargs for the port at position `index` (which keeps the device name
    /// unique).
    pub fn devargs(&self, index: usize) -> String {
        let client = u8::from(self.mode == VhostMode::Client);
        format!("net_vhost{index},iface={},queues={},client={client}", self.path.display(), self.queues)
    }
}

/// Checks port `index`'s `vhost` table; a relative path is relative to `base`.
pub(crate) fn check_vhost(raw: &RawVhost, base: &Path, index: usize) -> Result<(VhostPort, Devargs), ConfigError> {
    let at = |key: &str| format!("port[{index}].vhost.{key}");
    let path = check_socket_path(&raw.path, base).map_err(|r| ConfigError::invalid(at("path"), r))?;
    let mode = match raw.mode.as_deref() {
        None | Some("client") => VhostMode::Client,
        Some("server") => VhostMode::Server,
        Some(other) => {
            return Err(ConfigError::invalid(at("mode"), format!("{other:?} is not one of \"client\", \"server\"")));
        }
    };
    if mode == VhostMode::Server && path.exists() && !is_socket(&path) {
        return Err(ConfigError::invalid(
            at("path"),
            format!("{} exists and is not a socket (a server creates it)", path.display()),
        ));
    }
    let queues = check_range(raw.queues, 1, 1, i64::from(VHOST_MAX_QUEUES), &at("queues"))? as u16;
    let vhost = VhostPort { path, mode, queues };
    let devargs = Devargs::parse(&vhost.devargs(index), base).map_err(|r| ConfigError::invalid(at("path"), r))?;
    Ok((vhost, devargs))
}

fn check_socket_path(text: &str, base: &Path) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = text.chars().find(|c| DEVARGS_SPECIAL.contains(c) || c.is_whitespace()) {
        return Err(format!("{text:?} contains {c:?}, which DPDK device arguments cannot carry"));
    }
    let path = base.join(text);
    let len = path.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(format!("{} is {len} bytes; a Unix socket path has at most {SOCKET_PATH_MAX}", path.display()));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    Ok(path)
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(path: &str, mode: Option<&str>, queues: Option<i64>) -> RawVhost {
        RawVhost { path: path.into(), mode: mode.map(str::to_string), queues }
    }

    #[test]
    fn derives_net_vhost_devargs_with_client_mode_by_default() {
        let (v, d) = check_vhost(&raw("vm.sock", None, None), Path::new("/tmp"), 3).unwrap();
        assert_eq!((v.mode, v.queues, v.path.as_path()), (VhostMode::Client, 1, Path::new("/tmp/vm.sock")));
        assert_eq!(d.to_string(), "net_vhost3,iface=/tmp/vm.sock,queues=1,client=1");
        let (_, d) = check_vhost(&raw("/tmp/vm.sock", Some("server"), Some(4)), Path::new("/x"), 0).unwrap();
        assert_eq!(d.to_string(), "net_vhost0,iface=/tmp/vm.sock,queues=4,client=0");
    }
}

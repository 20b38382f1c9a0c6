//! DPDK device arguments (`net_pcap0,rx_pcap=in.pcap` or `0000:01:00.0,key=value`): checked for
//! shape, and their file paths made absolute relative to the config file.

use std::fmt;
use std::path::Path;

/// How a devargs key uses its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathUse {
    /// A file the driver reads: must exist.
    Input,
    /// A file the driver writes: its directory must exist.
    Output,
    /// A Unix socket: its directory must exist.
    Socket,
}

/// Keys whose values are paths, per driver.
const PATH_KEYS: &[(&str, &str, PathUse)] = &[
    ("net_pcap", "rx_pcap", PathUse::Input),
    ("net_pcap", "tx_pcap", PathUse::Output),
    ("eth_pcap", "rx_pcap", PathUse::Input),
    ("eth_pcap", "tx_pcap", PathUse::Output),
    ("net_vhost", "iface", PathUse::Socket),
    ("eth_vhost", "iface", PathUse::Socket),
    ("net_virtio_user", "path", PathUse::Socket),
];

/// Parsed, validated device arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devargs {
    device: String,
    args: Vec<(String, String)>,
}

impl Devargs {
    /// Parses `text`; relative paths in known path keys are resolved against `base_dir`.
    /// The error is the reason only; the caller adds the field.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty: give a PCI address (0000:01:00.0) or a vdev (net_pcap0,rx_pcap=in.pcap)".into());
        }
        let mut parts = split_top_level(text)?.into_iter();
        let device = parts.next().unwrap_or_default();
        check_device_name(&device)?;
        let driver = vdev_driver(&device);
        let mut args = Vec::new();
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("malformed argument {part:?}: expected key=value"));
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("malformed argument {part:?}: bad key {key:?}"));
            }
            if value.is_empty() {
                return Err(format!("argument {key:?} has no value"));
            }
            let value = match driver.and_then(|d| path_use(d, key)) {
                Some(usage) => resolve_path(key, value, usage, base_dir)?,
                None => value.to_string(),
            };
            args.push((key.to_string(), value));
        }
        Ok(Self { device, args })
    }

    /// The device: a PCI address or a vdev name (`net_pcap0`).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The vdev driver (`net_pcap` for `net_pcap0`), or `None` for a PCI device.
    pub fn driver(&self) -> Option<&str> {
        vdev_driver(&self.device)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The vhost-user socket of a `net_vhost` device (its `iface`).
    pub fn vhost_socket(&self) -> Option<&str> {
        matches!(self.driver(), Some("net_vhost" | "eth_vhost")).then(|| self.get("iface")).flatten()
    }

    /// Every value of `key`, in order (some drivers take a key several times, one per queue).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.args.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for Devargs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.device)?;
        for (k, v) in &self.args {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

/// Splits on commas that are not inside `[...]` (as in `representor=[0,1]`).
fn split_top_level(text: &str) -> Result<Vec<String>, String> {
    let (mut parts, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ']'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if depth != 0 {
        return Err("unbalanced '['".into());
    }
    parts.push(cur);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err("has an empty argument (two commas in a row, or a trailing comma)".into());
    }
    Ok(parts.into_iter().map(|p| p.trim().to_string()).collect())
}

fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [domain, bus, devfn] if hex(domain, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    hex(bus, 2) && hex(dev, 2) && func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7')
}

fn check_device_name(device: &str) -> Result<(), String> {
    if is_pci_address(device) {
        return Ok(());
    }
    let ident = device.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && device.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident && (device.starts_with("net_") || device.starts_with("eth_")) {
        return Ok(());
    }
    Err(format!(
        "device {device:?} is neither a PCI address (0000:01:00.0) nor a network vdev name (net_pcap0, net_null0, ...)"
    ))
}

/// `net_pcap0` -> `net_pcap`; `None` for PCI addresses.
fn vdev_driver(device: &str) -> Option<&str> {
    if is_pci_address(device) {
        return None;
    }
    Some(device.trim_end_matches(|c: char| c.is_ascii_digit()))
}

fn path_use(driver: &str, key: &str) -> Option<PathUse> {
    PATH_KEYS.iter().find(|(d, k, _)| *d == driver && *k == key).map(|(_, _, u)| *u)
}

fn resolve_path(key: &str, value: &str, usage: PathUse, base_dir: &Path) -> Result<String, String> {
    let path = base_dir.join(value);
    match usage {
        PathUse::Input if !path.is_file() => {
            return Err(format!("{key}: file {} does not exist", path.display()));
        }
        PathUse::Output | PathUse::Socket => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!("{key}: directory {} does not exist", dir.display()));
            }
        }
        PathUse::Input => {}
    }
    path.to_str().map(str::to_string).ok_or_else(|| format!("{key}: path {} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Devargs, String> {
        Devargs::parse(s, Path::new("/nonexistent-base"))
    }

    #[test]
    fn accepts_vdevs_and_pci() {
        assert_eq!(parse("net_null0,no-rx=1").unwrap().to_string(), "net_null0,no-rx=1");
        assert_eq!(parse("0000:01:00.0").unwrap().driver(), None);
        assert_eq!(parse("01:00.1,representor=[0,1]").unwrap().get("representor"), Some("[0,1]"));
        assert_eq!(parse("net_tap0,iface=ftap0").unwrap().driver(), Some("net_tap"));
    }

    #[test]
    fn resolves_output_paths_against_the_base() {
        let d = Devargs::parse("net_pcap1,tx_pcap=out.pcap", Path::new("/tmp")).unwrap();
        assert_eq!(d.get("tx_pcap"), Some("/tmp/out.pcap"));
    }

    #[test]
    fn rejects_malformed() {
        for (text, reason) in [
            ("", "is empty"),
            ("net_pcap0,", "empty argument"),
            ("net_pcap0,rx_pcap", "expected key=value"),
            ("net_pcap0,=x", "bad key"),
            ("net_pcap0,rx_pcap=", "has no value"),
            ("pcap0", "neither a PCI address"),
            ("0000:01:00.9", "neither a PCI address"),
            ("net_x0,a=[1,2", "unbalanced"),
            ("net_pcap0,rx_pcap=missing.pcap", "does not exist"),
            ("net_pcap0,tx_pcap=nodir/out.pcap", "directory"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }
}

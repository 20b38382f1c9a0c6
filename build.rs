//! Link settings for the `ferrovs` binary and its tests. The DPDK libraries themselves are linked by
//! `dpdk-sys`; here we only make sure the binary finds them at run time when DPDK lives outside
//! the system library path (a DPDK built from source under /usr/local or /opt, found through
//! PKG_CONFIG_PATH): rustc-link-arg from a dependency's build script does not reach the binary.

use std::process::Command;

const SETUP_HINT: &str = "DPDK 22.11 was not found through pkg-config (libdpdk): run `scripts/setup.sh` as root \
     from the ferrovs checkout to install it, then build again";

/// Directories the dynamic loader searches without help.
const SYSTEM_LIB_DIRS: &[&str] =
    &["/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    let (Some(libdir), Some(version)) = (pkg_config("--variable=libdir"), pkg_config("--modversion")) else {
        println!("cargo::error={SETUP_HINT}");
        return;
    };
    println!("cargo::rustc-env=FERROVS_DPDK_VERSION={version}");
    if !libdir.is_empty() && !SYSTEM_LIB_DIRS.contains(&libdir.trim_end_matches('/')) {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{libdir}");
    }
}

fn pkg_config(arg: &str) -> Option<String> {
    let out = Command::new("pkg-config").args([arg, "libdpdk"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

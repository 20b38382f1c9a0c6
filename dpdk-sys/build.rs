//! Generates the DPDK bindings with bindgen and builds the C shim for DPDK's static inline functions.
//!
//! DPDK is found through pkg-config (`libdpdk`). Its cflags are used verbatim for both bindgen and the
//! shim: they carry `-include rte_config.h -march=corei7`, without which the inline headers do not
//! compile (the `pkg-config` crate drops both, hence the raw command). We link dynamically so that
//! DPDK's drivers (net_pcap, net_null, vhost, ...) load as plugins from EAL's driver directory;
//! only `net_vhost`, whose queue-event function we call, is linked by name too.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SETUP_HINT: &str = "DPDK 22.11 was not found through pkg-config (libdpdk): run `scripts/setup.sh` as root \
     from the ferrovs checkout to install it, then build again";

fn pkg_config(args: &[&str]) -> Option<String> {
    let out = Command::new("pkg-config").args(args).arg("libdpdk").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=shim/ferrovs_shim.h");
    println!("cargo::rerun-if-changed=shim/ferrovs_shim.c");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let (Some(version), Some(cflags), Some(libs)) =
        (pkg_config(&["--modversion"]), pkg_config(&["--cflags"]), pkg_config(&["--libs"]))
    else {
        println!("cargo::error={SETUP_HINT}");
        return;
    };
    if !version.starts_with("22.11") {
        println!("cargo::warning=ferrovs is built and tested against DPDK 22.11; found libdpdk {version}");
    }
    println!("cargo::rustc-env=DPDK_VERSION={version}");
    println!("cargo::metadata=version={version}");

    let cflags: Vec<&str> = cflags.split_whitespace().collect();
    link_dpdk(&libs);
    build_shim(&cflags);
    generate_bindings(&cflags);
}

/// Passes pkg-config's `--libs` on to rustc: search paths, the libraries, and linker flags.
fn link_dpdk(libs: &str) {
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo::rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo::rustc-link-lib=dylib={lib}");
        }
        // `-Wl,--as-needed` is rustc's default for Linux targets already; other flags are not needed.
    }
    // pkg-config lists no drivers (they load as plugins), but the vhost driver's own API
    // (`rte_eth_vhost_get_queue_event`) needs its library linked. It is the same file EAL loads
    // from its driver directory, so the driver is loaded once.
    println!("cargo::rustc-link-lib=dylib=rte_net_vhost");
}

fn build_shim(cflags: &[&str]) {
    let mut build = cc::Build::new();
    build.file("shim/ferrovs_shim.c").include("shim").opt_level(3).warnings(true);
    // `-include rte_config.h` must stay two flags in order; `flag` keeps them as given.
    for flag in cflags {
        build.flag(flag);
    }
    build.compile("ferrovs_shim");
}

fn generate_bindings(cflags: &[&str]) {
    let bindings = bindgen::Builder::default()
        .header("shim/ferrovs_shim.h")
        .clang_args(cflags.iter().copied())
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        // Only the functions we call; the types they use come along transitively. This keeps out
        // rte_flow.h's packed/aligned structs that rustc cannot represent.
        .allowlist_function("ferrovs_.*")
        .allowlist_function(
            "rte_(eal|eth|pktmbuf|mempool|lcore|thread|dev|strerror|socket|get_tsc|delay|vhost|log)_?.*",
        )
        .allowlist_function("rte_(strerror|exit|get_main_lcore|get_next_lcore)")
        // Constants defined with RTE_BIT64() and friends need clang to evaluate the macro.
        .clang_macro_fallback()
        .allowlist_var(
            "RTE_ETH_.*|RTE_MBUF_.*|RTE_PKTMBUF_.*|RTE_MEMPOOL_.*|SOCKET_ID_ANY|LCORE_ID_ANY|RTE_MAX_LCORE|RTE_MAX_ETHPORTS|RTE_VHOST_.*",
        )
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .derive_default(true)
        .generate_comments(false)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on the DPDK headers: {e}"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(&out).expect("write bindings.rs");
}

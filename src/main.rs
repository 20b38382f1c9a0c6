//! The `ferrovs` command: run the switch, check a configuration, generate test traffic.

#![deny(unsafe_code)]

mod pktgen;
mod trace;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrovs_config::{Config, Host};
use ferrovs_switch::runtime::{self, RunOptions};

/// ferrovs: a DPDK poll-mode virtual switch.
#[derive(Debug, Parser)]
#[command(name = "ferrovs", version = VERSION, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the switch and forward until SIGINT/SIGTERM (or --duration / --stop-after-rx).
    Run {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds (fractions allowed).
        #[arg(long, value_parser = parse_seconds)]
        duration: Option<Duration>,
        /// Stop once this many packets have been received and processed (for replaying a pcap).
        #[arg(long, value_name = "PACKETS")]
        stop_after_rx: Option<u64>,
        /// Also report rates over the time after this many seconds (benchmarks: leaves the
        /// start-up miss storm and cold caches out of the measurement).
        #[arg(long, value_parser = parse_seconds)]
        warmup: Option<Duration>,
        /// Also write the final counters as JSON to this file.
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
        /// Record megaflows installed and port counts every control tick (5 ms, at most a
        /// minute's worth) into the JSON (flow-setup benchmarks).
        #[arg(long)]
        timeline: bool,
    },
    /// Validate a configuration without starting DPDK; prints one line and exits non-zero if bad.
    Check {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show what the flow tables do to a packet, table by table (like ovs-appctl ofproto/trace).
    Trace(trace::Trace),
    /// Write a pcap of UDP test traffic.
    GenPcap(pktgen::GenPcap),
}

/// `ferrovs --version`: ours and the DPDK we were built against.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (DPDK ", env!("FERROVS_DPDK_VERSION"), ")");

fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

/// The CPUs this process may run on (before EAL pins the thread).
fn host() -> Host {
    let cpus = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect::<Vec<_>>())
        .filter(|ids| !ids.is_empty())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect());
    Host { cpus }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path, &host()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} ports, {} PMD cores, {} flow rules)",
                    config.display(),
                    c.ports.len(),
                    c.datapath.pmd_cores.len(),
                    c.flows.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config, duration, stop_after_rx, warmup, stats_json, timeline } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run(&config, RunOptions { duration, stop_after_rx, warmup, timeline }, stats_json.as_deref())
        }
        Command::Trace(trace) => {
            let config = match load(&trace.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match trace.run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::GenPcap(gen_pcap) => match gen_pcap.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(config: &Config, opts: RunOptions, stats_json: Option<&Path>) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while we shut down exits at once.
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)));
        if let Err(e) = registered {
            eprintln!("error: cannot install the handler for signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let report = match runtime::run(config, &opts, &stop) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    if report.mempool.in_use != 0 {
        log::error!("{} mbufs leaked: please report this bug", report.mempool.in_use);
    }
    if let Some(path) = stats_json {
        let json = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

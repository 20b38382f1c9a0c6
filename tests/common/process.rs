//! A child process of a test (ferrovs, a testpmd guest) whose stdout and stderr are collected line
//! by line in the background; stopped by signal and PID, and killed if still running when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process whose output is collected line by line, killed (by PID) if still running
/// when dropped.
pub struct Process {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `cmd` with its output piped to the collectors.
    pub fn spawn(mut cmd: Command) -> Result<Self, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let (stdout, stderr) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let readers = vec![collect(out, Arc::clone(&stdout)), collect(err, Arc::clone(&stderr))];
        Ok(Self { child, stdout, stderr, readers })
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (by PID) and waits up to `timeout` for the exit.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Result<ExitStatus, String> {
        let pid = self.child.id().to_string();
        if self.running() {
            let _ = Command::new("kill").args([signal, &pid]).status();
        }
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pid {pid} did not exit within {timeout:?} of {signal}; its threads (name, state, \
                     kernel wait channel):\n{}\nlast output:\n{}{}",
                    threads(&pid),
                    tail(&self.stdout(), 15),
                    tail(&self.stderr(), 15)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// [`threads`] of every running process whose name is `name`, under a heading each.
pub fn threads_of_every(name: &str) -> String {
    let Ok(procs) = std::fs::read_dir("/proc") else { return String::new() };
    procs
        .flatten()
        .filter_map(|p| {
            let pid = p.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == name).then(|| format!("{name} {pid}:\n{}\n", threads(&pid)))
        })
        .collect()
}

/// One line per thread of process `pid`: name, state and where in the kernel it waits (to tell a
/// process blocked on a socket from one spinning).
fn threads(pid: &str) -> String {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default().trim().to_string();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return "(gone)".into() };
    let mut lines: Vec<String> = tasks
        .flatten()
        .map(|t| {
            let tid = t.file_name().to_string_lossy().into_owned();
            let stat = read(format!("/proc/{pid}/task/{tid}/stat"));
            // The state follows the parenthesised name.
            let state = stat.rsplit(") ").next().and_then(|s| s.split(' ').next()).unwrap_or("?").to_string();
            let comm = read(format!("/proc/{pid}/task/{tid}/comm"));
            let wchan = read(format!("/proc/{pid}/task/{tid}/wchan"));
            format!("  {tid} {comm} {state} {wchan}")
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("{l}\n")).collect()
}

fn collect(from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    })
}

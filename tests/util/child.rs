//! Running one test of this binary in a child process under a descriptor
//! limit (`prlimit`, util-linux), for tests that need a limit of their own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the ignored test `name` of the current test binary in a child with
/// `RLIMIT_NOFILE` lowered to `nofile`, stdin piped (closing it tells the child
/// to stop) and stdout piped.
pub fn spawn_limited(name: &str, nofile: u64) -> Child {
    let mut command = Command::new("prlimit");
    command.arg(format!("--nofile={nofile}:{nofile}")).arg(std::env::current_exe().expect("test binary path"));
    spawn_with(command, name)
}

/// Like `spawn_limited`, with the limits this process has.
pub fn spawn(name: &str) -> Child {
    spawn_with(Command::new(std::env::current_exe().expect("test binary path")), name)
}

/// Reads the child's stdout until a line carrying `PORT n` (libtest may print
/// "test NAME ... " before it on the same line).
pub fn read_port(child: &mut Child) -> u16 {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    loop {
        let line = lines.next().expect("the child prints its port").expect("readable stdout");
        if let Some((_, p)) = line.split_once("PORT ") {
            // Keep reading, so the child's later output never meets a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return p.trim().parse().expect("a port number");
        }
    }
}

fn spawn_with(mut command: Command, name: &str) -> Child {
    command
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"])
        .env("WARPCORE_TEST_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs the child test")
}

/// Whether this process is such a child.
pub fn is_child() -> bool {
    std::env::var_os("WARPCORE_TEST_CHILD").is_some()
}

/// Kills the child if the test fails before it ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The highest resident memory of process `pid` seen over `window`, sampled
/// every 20 ms: a negative check (an attack whose bytes were delivered
/// already grows an unbounded server within milliseconds, far inside it).
pub fn peak_rss_kib(pid: u32, window: Duration) -> u64 {
    let end = Instant::now() + window;
    let mut peak = rss_kib(pid);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        peak = peak.max(rss_kib(pid));
    }
    peak
}

//! CPU time from `/proc`: this process, other processes (`admit serve`
//! children, a PostgreSQL server's), and the whole machine, so that a run
//! can say where its cores went. Linux only; elsewhere every figure is
//! absent.

use std::collections::HashMap;

/// `/proc` counts in `USER_HZ` ticks, 100 a second on Linux.
const TICKS: f64 = 100.0;

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`); its parent.
fn stat(pid: &str) -> Option<(f64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count the
    // fields after its closing one (state is field 3, ppid 4, utime 14).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(((utime + stime) / TICKS, ppid))
}

/// CPU seconds a process has used so far.
pub fn process_seconds(pid: u32) -> Option<f64> {
    stat(&pid.to_string()).map(|(seconds, _)| seconds)
}

/// The parent of a process.
pub fn parent(pid: u32) -> Option<u32> {
    stat(&pid.to_string()).map(|(_, ppid)| ppid)
}

/// This process and the machine at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    /// This process's CPU seconds.
    pub own: f64,
    /// Seconds the machine's cores were busy (everything but idle and iowait).
    pub busy: f64,
    /// Seconds of all the machine's cores, busy or not.
    pub all: f64,
}

impl Machine {
    pub fn now() -> Self {
        let own = stat("self").map_or(f64::NAN, |(seconds, _)| seconds);
        let (busy, all) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("cpu "))?;
                let ticks: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                let all: f64 = ticks.iter().sum();
                // user nice system idle iowait …
                let idle = ticks.get(3)? + ticks.get(4)?;
                Some(((all - idle) / TICKS, all / TICKS))
            })
            .unwrap_or((f64::NAN, f64::NAN));
        Self { own, busy, all }
    }

    /// What was used between `start` and `self`.
    pub fn since(&self, start: &Self) -> Self {
        Self {
            own: self.own - start.own,
            busy: self.busy - start.busy,
            all: self.all - start.all,
        }
    }
}

/// A PostgreSQL server's processes on this machine: the postmaster and
/// its children, each with its CPU seconds and its title (a backend's
/// names its user and database: `postgres: admit admit_bench_… 127.0.0.1(…) idle`).
pub fn server_processes(postmaster: u32) -> HashMap<u32, (f64, String)> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some((seconds, ppid)) = stat(&pid.to_string()) else {
            continue;
        };
        if pid == postmaster || ppid == postmaster {
            let title = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            found.insert(pid, (seconds, title));
        }
    }
    found
}

//! CPU time and resident memory of the processes under test, from `/proc`.

use std::fs;

/// Kernel clock ticks per second for `/proc/PID/stat` (USER_HZ; 100 on Linux/x86).
pub const TICKS_PER_SEC: f64 = 100.0;

/// Summed over a set of processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// utime + stime (fields 14 and 15 of `/proc/PID/stat`), in ticks.
    pub cpu_ticks: u64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
}

/// Reads every pid; a pid that cannot be read counts as an error.
pub fn sample(pids: &[u32]) -> Result<Sample, String> {
    let mut total = Sample::default();
    for &pid in pids {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        total.cpu_ticks +=
            cpu_ticks(&stat).ok_or_else(|| format!("/proc/{pid}/stat: unparsable"))?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        total.rss_kib += rss_kib(&status).unwrap_or(0);
    }
    Ok(total)
}

/// utime + stime. The command name (field 2) may hold spaces and parentheses,
/// so fields are counted from the last `)`: field 3 is the first after it.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "42 (ng inx) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 9 1 2";
        assert_eq!(cpu_ticks(stat), Some(12));
    }

    #[test]
    fn reads_own_process() {
        let s = sample(&[std::process::id()]).unwrap();
        assert!(s.rss_kib > 0);
    }
}

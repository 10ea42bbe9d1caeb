//! The simulator's own CPU time and peak memory, read from `/proc`.

use super::*;

/// Clock ticks per second of /proc/self/stat times (`getconf CLK_TCK`, 100 on Linux).
pub(super) const CLK_TCK: f64 = 100.0;

/// CPU time and peak RSS of this process so far; `wall_s` is the run's wall
/// time. Reads /proc; anything missing or unparsable yields zeros.
pub fn cpu_usage(wall_s: f64) -> CpuUsage {
    let (user_s, system_s) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat_times(&s))
        .unwrap_or((0.0, 0.0));
    let max_rss_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_hwm_kb(&s))
        .map_or(0.0, |kb| kb as f64 / 1024.0);
    let percent_of_one_core = if wall_s > 0.0 && wall_s.is_finite() {
        (user_s + system_s) / wall_s * 100.0
    } else {
        0.0
    };
    CpuUsage {
        user_s,
        system_s,
        percent_of_one_core,
        max_rss_mb,
    }
}

/// utime and stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds.
/// The command name (field 2) may hold spaces and parentheses, so the fields
/// are counted from after the last ')', where field 3 starts.
pub(super) fn parse_stat_times(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime as f64 / CLK_TCK, stime as f64 / CLK_TCK))
}

/// The VmHWM line of /proc/<pid>/status, kB.
pub(super) fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..].split_whitespace().next()?.parse().ok()
}

//! The `process_*` metrics every Prometheus client exports (CPU, memory,
//! file descriptors, start time), read from `/proc/self` at each scrape:
//! docs/operations.md sizes a node by them. Rendered as Prometheus text
//! beside the recorder's output, since CPU seconds are a counter of
//! fractions, which the recorder's integer counters cannot hold.
//!
//! On a system without `/proc` (not Linux) nothing is rendered.

use std::fmt::Write;

use crate::telemetry::METRICS;

/// Clock ticks a second in `/proc/self/stat` (`USER_HZ`): 100 on every
/// Linux architecture the gateway runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// What was read of the process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    start_time_seconds: f64,
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at 3 (state): utime is 14, stime 15,
    // starttime 22.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu_ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Some(Reading {
        cpu_seconds: cpu_ticks as f64 / TICKS_PER_SECOND,
        resident_bytes: kib("VmRSS:").unwrap_or(0),
        virtual_bytes: kib("VmSize:").unwrap_or(0),
        open_fds,
        max_fds,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
    })
}

/// Appends the `process_*` families, as Prometheus text, to `out`.
pub fn render(out: &mut String) {
    let Some(r) = read() else { return };
    let family = |out: &mut String, name: &str, kind: &str, value: String| {
        let help = METRICS.iter().find(|m| m.name == name).map_or("", |m| m.help);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        format!("{:.2}", r.cpu_seconds),
    );
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        r.resident_bytes.to_string(),
    );
    family(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        r.virtual_bytes.to_string(),
    );
    family(out, "process_open_fds", "gauge", r.open_fds.to_string());
    family(out, "process_max_fds", "gauge", r.max_fds.to_string());
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        format!("{:.2}", r.start_time_seconds),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let r = read().expect("/proc on Linux");
        assert!(r.resident_bytes > 1 << 20, "{r:?}");
        assert!(r.virtual_bytes >= r.resident_bytes);
        assert!(r.open_fds >= 3 && r.max_fds >= r.open_fds, "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(r.start_time_seconds <= now + 1.0 && r.start_time_seconds > now - 86_400.0 * 365.0);
        let mut text = String::new();
        render(&mut text);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total "));
    }
}

//! What a process costs, read from `/proc`: CPU seconds, resident memory (now and at its
//! peak) and threads. Benchmarks print these beside their latencies.

/// CPU seconds `pid` has used (user + system); `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// A `/proc/<pid>/status` field, as its first number.
fn status_field(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory now, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_field(pid, "VmRSS").map(|kib| kib / 1024.0)
}

/// Peak resident memory, MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_field(pid, "VmHWM").map(|kib| kib / 1024.0)
}

/// Threads now.
pub fn threads(pid: u32) -> Option<u32> {
    status_field(pid, "Threads").map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_mib(me).is_some_and(|m| m > 0.0));
        assert!(peak_rss_mib(me) >= rss_mib(me));
        assert!(threads(me).is_some_and(|n| n >= 1));
    }
}

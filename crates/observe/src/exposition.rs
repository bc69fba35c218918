//! The classic Prometheus text format (0.0.4) from prometheus-client's OpenMetrics output, for
//! scrapers and tools that do not ask for OpenMetrics (`curl`, `promtool check metrics`, older
//! Prometheus). Prometheus itself asks for OpenMetrics and gets it unchanged.
//!
//! The two formats differ, for what ferrolb exports, only in: a counter family is named without
//! its `_total` suffix in OpenMetrics `# HELP` / `# TYPE` lines but with it in the text format;
//! `# UNIT` lines and the final `# EOF` exist only in OpenMetrics.

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Rewrites an OpenMetrics exposition as the Prometheus text format.
pub fn to_text_format(openmetrics: &str) -> String {
    // prometheus-client writes a family's HELP before its TYPE: find every counter family
    // first, then rename both lines.
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_name_and_openmetrics_only_lines_go() {
        let om = "# HELP ferrolb_k8s_client_updates Writes made.\n\
                  # TYPE ferrolb_k8s_client_updates counter\n\
                  ferrolb_k8s_client_updates_total 3\n\
                  # HELP ferrolb_allocator_addresses_in_use_total Addresses held.\n\
                  # TYPE ferrolb_allocator_addresses_in_use_total gauge\n\
                  ferrolb_allocator_addresses_in_use_total{pool=\"lab\"} 6\n\
                  # HELP d Seconds.\n\
                  # TYPE d histogram\n\
                  # UNIT d seconds\n\
                  d_bucket{le=\"+Inf\"} 1\n\
                  # EOF\n";
        let text = to_text_format(om);
        assert_eq!(
            text,
            "# HELP ferrolb_k8s_client_updates_total Writes made.\n\
             # TYPE ferrolb_k8s_client_updates_total counter\n\
             ferrolb_k8s_client_updates_total 3\n\
             # HELP ferrolb_allocator_addresses_in_use_total Addresses held.\n\
             # TYPE ferrolb_allocator_addresses_in_use_total gauge\n\
             ferrolb_allocator_addresses_in_use_total{pool=\"lab\"} 6\n\
             # HELP d Seconds.\n\
             # TYPE d histogram\n\
             d_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn only_an_openmetrics_accept_header_gets_openmetrics() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}

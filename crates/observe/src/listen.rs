//! Listen addresses for `/metrics` and health as operators and the chart write them.
//!
//! The chart gives the speaker its node's IP through the downward API and appends the port
//! (`$(HOST_IP):7472`), which for an IPv6 node reads `2001:db8::1:7472`: not a socket address
//! as Rust parses one (that wants `[2001:db8::1]:7472`), but unambiguous for a listen address,
//! whose port always comes last.

use std::net::{IpAddr, SocketAddr};

/// Parses `IP:port`, `[IPv6]:port`, or an IPv6 address followed by `:port` without brackets.
///
/// # Errors
/// When the text is none of those, saying which forms are accepted.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.rsplit_once(':')
        .and_then(|(ip, port)| {
            Some(SocketAddr::new(
                ip.parse::<IpAddr>().ok()?,
                port.parse().ok()?,
            ))
        })
        .ok_or_else(|| {
            format!("{text:?} is not a listen address: write IP:port, [IPv6]:port or IPv6:port")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_bracketed_ipv6_parse_as_socket_addresses() {
        assert_eq!(
            listen_addr("192.0.2.11:7472"),
            Ok("192.0.2.11:7472".parse().expect("valid"))
        );
        assert_eq!(
            listen_addr("[2001:db8::11]:7472"),
            Ok("[2001:db8::11]:7472".parse().expect("valid"))
        );
    }

    #[test]
    fn an_ipv6_node_ip_with_the_port_appended_is_that_ip_and_port() {
        assert_eq!(
            listen_addr("2001:db8::11:7472"),
            Ok("[2001:db8::11]:7472".parse().expect("valid"))
        );
        assert_eq!(
            listen_addr(":::7472"),
            Ok("[::]:7472".parse().expect("valid"))
        );
    }

    #[test]
    fn an_address_without_a_port_or_with_a_bad_one_is_refused() {
        for bad in [
            "192.0.2.11",
            "192.0.2.11:http",
            "$(HOST_IP):7472",
            ":7472",
            "",
        ] {
            assert!(listen_addr(bad).is_err(), "{bad}");
        }
    }
}

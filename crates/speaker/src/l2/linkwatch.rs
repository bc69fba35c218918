//! Tells the speaker when the node's links change (added, removed, up, down, renamed, new
//! addresses), so the interfaces answering for each IP are chosen again at once instead of on a
//! timer. Listens on an rtnetlink socket; what changed is not parsed: the responder rescans.

use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use tokio::sync::mpsc::UnboundedSender;

/// Multicast groups from `<linux/rtnetlink.h>`: links, IPv4 and IPv6 addresses.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Starts a thread that sends `()` after every link or address change, until the receiver is
/// dropped.
///
/// # Errors
/// When the netlink socket cannot be opened (the caller falls back to periodic rescans).
pub fn spawn(changed: UnboundedSender<()>) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(
        0,
        RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
    ))?;
    std::thread::Builder::new()
        .name("linkwatch".into())
        .spawn(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            loop {
                buf.clear();
                // An overrun (ENOBUFS) also means something changed.
                let _ = socket.recv(&mut buf, 0);
                if changed.send(()).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

//! A speaker's identity in the gossip group: its node name, where it listens, and an incarnation
//! that grows each time it restarts or rejoins, so a new instance always wins over the old one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One speaker, as foca tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Kubernetes node name: the identity's stable address.
    pub node: String,
    /// UDP address of its gossip socket.
    pub addr: SocketAddr,
    /// Start time (or any number that grows across restarts) plus rejoin count.
    pub incarnation: u64,
}

impl foca::Identity for Member {
    /// The socket address: a joining speaker knows only where a peer listens, and foca accepts
    /// an announcement addressed to any identity with its address.
    type Addr = SocketAddr;

    /// Declared down but alive: rejoin at once as a newer instance.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The newer instance of a node wins; the address breaks ties deterministically.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.addr) > (adversary.incarnation, adversary.addr)
    }
}

//! Gossip datagrams are sealed with XChaCha20-Poly1305 under a shared key, so only speakers that
//! hold the key can change membership. A datagram carries its send time inside the sealed part;
//! one older than the replay window, or one already seen within it, is dropped.
//!
//! Wire format: `version(1) | key id(4) | nonce(24) | ciphertext(timestamp_ms(8) | payload)`.
//! Keys rotate without downtime: the first key of the ring seals, every key opens.

use std::collections::{BTreeMap, VecDeque};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// The speaker's replay window: covers clock skew between nodes (NTP keeps it far smaller)
/// while keeping the nonce memory small.
pub const REPLAY_WINDOW_MS: u64 = 10_000;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TIMESTAMP_LEN: usize = 8;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Too short, unknown version.
    #[error("malformed datagram")]
    Malformed,
    /// Sealed with a key this speaker does not hold.
    #[error("unknown key")]
    UnknownKey,
    /// The seal does not verify (tampered, or forged).
    #[error("authentication failed")]
    Forged,
    /// Older (or newer) than the replay window allows.
    #[error("outside the replay window")]
    Stale,
    /// Seen before within the window.
    #[error("replayed")]
    Replayed,
}

struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// Any secret text becomes a 256-bit key by SHA-256, so the Secret may hold whatever a
    /// generator produced; the id is a hash of the key, not the key.
    fn from_secret(secret: &str) -> Self {
        let key: [u8; 32] = Sha256::digest(secret.trim().as_bytes()).into();
        let id_hash: [u8; 32] = Sha256::digest(key).into();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&id_hash[..KEY_ID_LEN]);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
        }
    }
}

/// The keys a speaker holds, the first of which seals.
pub struct KeyRing {
    keys: Vec<SealKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyRing {
    /// Keys from a Secret file's text: one per non-empty line, the first seals.
    ///
    /// # Errors
    /// When there is no key.
    pub fn from_lines(text: &str) -> Result<Self, &'static str> {
        let keys: Vec<SealKey> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(SealKey::from_secret)
            .collect();
        if keys.is_empty() {
            return Err("the gossip key file holds no key");
        }
        Ok(Self { keys })
    }
}

/// Seals and opens datagrams, remembering recent nonces to refuse replays.
pub struct Sealer {
    ring: KeyRing,
    window_ms: u64,
    seen: BTreeMap<[u8; NONCE_LEN], u64>,
    order: VecDeque<(u64, [u8; NONCE_LEN])>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("ring", &self.ring)
            .field("window_ms", &self.window_ms)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with a replay window of `window_ms` milliseconds each way (clocks of nodes
    /// differ a little; the window must cover that skew).
    pub fn new(ring: KeyRing, window_ms: u64) -> Self {
        Self {
            ring,
            window_ms,
            seen: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Seals `payload` sent at `now_ms` (wall clock) with a fresh random `nonce`.
    pub fn seal(&self, payload: &[u8], now_ms: u64, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let key = &self.ring.keys[0];
        let mut plain = Vec::with_capacity(TIMESTAMP_LEN + payload.len());
        plain.extend_from_slice(&now_ms.to_be_bytes());
        plain.extend_from_slice(payload);
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        // The header is authenticated too, so a key id or version cannot be swapped.
        let header = out.clone();
        let sealed = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a datagram received at `now_ms`, returning its payload.
    ///
    /// # Errors
    /// Every reason a datagram is dropped; nothing is remembered for a rejected one.
    pub fn open(&mut self, datagram: &[u8], now_ms: u64) -> Result<Vec<u8>, Rejected> {
        if datagram.len() < HEADER_LEN + TIMESTAMP_LEN + 16 || datagram[0] != VERSION {
            return Err(Rejected::Malformed);
        }
        let (header, sealed) = datagram.split_at(HEADER_LEN);
        let key = self
            .ring
            .keys
            .iter()
            .find(|k| k.id == header[1..1 + KEY_ID_LEN])
            .ok_or(Rejected::UnknownKey)?;
        let mut nonce = [0; NONCE_LEN];
        nonce.copy_from_slice(&header[1 + KEY_ID_LEN..]);
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| Rejected::Forged)?;
        let mut ts = [0; TIMESTAMP_LEN];
        ts.copy_from_slice(&plain[..TIMESTAMP_LEN]);
        let sent = u64::from_be_bytes(ts);
        if sent.abs_diff(now_ms) > self.window_ms {
            return Err(Rejected::Stale);
        }
        self.forget_before(now_ms.saturating_sub(2 * self.window_ms));
        if self.seen.contains_key(&nonce) {
            return Err(Rejected::Replayed);
        }
        self.seen.insert(nonce, sent);
        self.order.push_back((now_ms, nonce));
        Ok(plain[TIMESTAMP_LEN..].to_vec())
    }

    /// Nonces older than the window can never be accepted again (their timestamps are stale), so
    /// they need not be remembered: memory is bounded by the datagram rate times the window.
    fn forget_before(&mut self, cutoff_ms: u64) {
        while let Some((at, nonce)) = self.order.front().copied() {
            if at >= cutoff_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&nonce);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sealer(keys: &str) -> Sealer {
        Sealer::new(KeyRing::from_lines(keys).unwrap(), 5_000)
    }

    #[test]
    fn sealed_datagrams_open_once_with_the_same_key() {
        let mut a = sealer("secret-one");
        let d = a.seal(b"hello", 1_000, [7; 24]);
        assert_eq!(a.open(&d, 1_100).unwrap(), b"hello");
        assert_eq!(a.open(&d, 1_200), Err(Rejected::Replayed));
    }

    #[test]
    fn forged_tampered_stale_and_foreign_datagrams_are_rejected() {
        let a = sealer("secret-one");
        let mut b = sealer("secret-one");
        let d = a.seal(b"hello", 1_000, [1; 24]);
        let mut tampered = d.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(b.open(&tampered, 1_000), Err(Rejected::Forged));
        assert_eq!(b.open(&d, 60_000), Err(Rejected::Stale));
        assert_eq!(b.open(&d[..10], 1_000), Err(Rejected::Malformed));
        let other = sealer("another-secret").seal(b"x", 1_000, [2; 24]);
        assert_eq!(b.open(&other, 1_000), Err(Rejected::UnknownKey));
    }

    #[test]
    fn keys_rotate_without_downtime() {
        // Old speakers seal with "old"; new ones hold "new" first and "old" second.
        let old = sealer("old");
        let mut new = sealer("new\nold");
        assert!(new.open(&old.seal(b"x", 1_000, [3; 24]), 1_000).is_ok());
        let mut old_reader = sealer("old\nnew");
        assert!(
            old_reader
                .open(&new.seal(b"y", 1_000, [4; 24]), 1_000)
                .is_ok()
        );
    }

    #[test]
    fn replay_memory_is_bounded_by_the_window() {
        let mut s = sealer("k");
        for i in 0..1000u64 {
            let mut nonce = [0; 24];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            let d = s.seal(b"x", i * 100, nonce);
            s.open(&d, i * 100).unwrap();
        }
        assert!(s.seen.len() <= 101, "{}", s.seen.len());
    }
}

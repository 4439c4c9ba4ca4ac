//! Session tickets sealed with keys from a file a fleet shares ([`lb_tls::tickets`] reads it), so
//! that a client resumes its TLS session on whichever instance it reaches. A ticket is
//! `key name (16) | nonce (12) | ChaCha20-Poly1305(state) | tag (16)`, the key name bound as
//! associated data; the first key of the file seals, every key opens. The keys sit behind an
//! `ArcSwap`: a rewritten file takes effect for the next ticket, without a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use lb_tls::TICKET_KEY_BYTES;
use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of a key's name, the start of each ticket.
const NAME_BYTES: usize = 16;
/// How long a client may keep a ticket, in seconds: as long as rustls's own rotating keys live.
const LIFETIME_SECONDS: u32 = 6 * 60 * 60;

struct Key {
    name: [u8; NAME_BYTES],
    key: LessSafeKey,
}

/// Tickets sealed with a fleet's shared keys.
pub(crate) struct SharedTicketer {
    keys: ArcSwap<Vec<Key>>,
    random: SystemRandom,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedTicketer({} keys)", self.keys.load().len())
    }
}

fn keys(raw: &[[u8; TICKET_KEY_BYTES]]) -> Vec<Key> {
    raw.iter()
        .filter_map(|bytes| {
            let mut name = [0u8; NAME_BYTES];
            name.copy_from_slice(&bytes[..NAME_BYTES]);
            let unbound = UnboundKey::new(&aead::CHACHA20_POLY1305, &bytes[NAME_BYTES..]).ok()?;
            Some(Key {
                name,
                key: LessSafeKey::new(unbound),
            })
        })
        .collect()
}

impl SharedTicketer {
    /// Sealing and opening with `raw` (a parsed key file, never empty).
    pub(crate) fn new(raw: &[[u8; TICKET_KEY_BYTES]]) -> Arc<Self> {
        Arc::new(Self {
            keys: ArcSwap::from_pointee(keys(raw)),
            random: SystemRandom::new(),
        })
    }

    /// Takes a rewritten key file: the next ticket is sealed with its first key.
    pub(crate) fn replace(&self, raw: &[[u8; TICKET_KEY_BYTES]]) {
        self.keys.store(Arc::new(keys(raw)));
    }
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECONDS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let key = keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_BYTES + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let name = cipher.get(..NAME_BYTES)?;
        let nonce = cipher.get(NAME_BYTES..NAME_BYTES + NONCE_LEN)?;
        let sealed = cipher.get(NAME_BYTES + NONCE_LEN..)?;
        let keys = self.keys.load();
        let key = keys.iter().find(|key| key.name == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut opened = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&key.name), &mut opened)
            .ok()?;
        let length = plain.len();
        opened.truncate(length);
        Some(opened)
    }
}

#[cfg(test)]
mod tests {
    use rustls::server::ProducesTickets;

    use super::*;

    fn key(seed: u8) -> [u8; TICKET_KEY_BYTES] {
        std::array::from_fn(|i| seed.wrapping_add(i as u8))
    }

    #[test]
    fn sealed_by_one_instance_opened_by_another() {
        let one = SharedTicketer::new(&[key(1)]);
        let other = SharedTicketer::new(&[key(1)]);
        let ticket = one.encrypt(b"session state").unwrap();
        assert_eq!(
            other.decrypt(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        // Two tickets of one state differ (fresh nonces).
        assert_ne!(one.encrypt(b"session state").unwrap(), ticket);
    }

    #[test]
    fn rotation_keeps_old_tickets_until_their_key_goes() {
        let ticketer = SharedTicketer::new(&[key(1)]);
        let old = ticketer.encrypt(b"old").unwrap();
        ticketer.replace(&[key(2), key(1)]);
        assert_eq!(ticketer.decrypt(&old).as_deref(), Some(&b"old"[..]));
        let new = ticketer.encrypt(b"new").unwrap();
        assert_eq!(&new[..NAME_BYTES], &key(2)[..NAME_BYTES]);
        ticketer.replace(&[key(2)]);
        assert_eq!(ticketer.decrypt(&old), None);
        assert_eq!(ticketer.decrypt(&new).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn tampered_or_short_tickets_open_to_nothing() {
        let ticketer = SharedTicketer::new(&[key(3)]);
        let ticket = ticketer.encrypt(b"state").unwrap();
        for at in [0, NAME_BYTES, NAME_BYTES + NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[at] ^= 1;
            assert_eq!(ticketer.decrypt(&bad), None, "byte {at}");
        }
        for end in 0..ticket.len() {
            assert_eq!(ticketer.decrypt(&ticket[..end]), None);
        }
    }
}

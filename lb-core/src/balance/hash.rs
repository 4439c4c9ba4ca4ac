//! Fixed, documented 64-bit hashes for consistent hashing.
//!
//! `ip_hash` must map a client to the same backend after a restart, on every instance and
//! across Rust releases, so it cannot use `std`'s `RandomState` (randomly keyed) or
//! `DefaultHasher` (algorithm unspecified). These functions are defined here, byte for byte:
//!
//! - [`fnv1a64`]: FNV-1a, 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
//! - [`mix64`]: the SplitMix64 finalizer (Stafford's "Mix13"), which spreads FNV-1a's weak
//!   high bits over the whole word.
//! - [`vnode_point`]: the ring position of a backend's `replica`-th virtual node: the
//!   `(replica + 1)`-th output of a SplitMix64 generator seeded with `fnv1a64(id)`.
//! - [`client_point`]: `mix64(fnv1a64(address bytes))`, where an IPv4 address is its 4 bytes
//!   and an IPv6 address its 16 bytes, after mapping IPv4-mapped IPv6 (`::ffff:a.b.c.d`) to
//!   IPv4 so a dual-stack listener keys a client the same way as an IPv4 one.
//!
//! These are not keyed hashes: a client who knows the backend names can choose addresses
//! that land on one backend. That is acceptable for affinity, not for anything adversarial.

use std::net::IpAddr;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// SplitMix64's increment: 2^64 / φ, rounded to odd.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a, 64-bit, over `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// SplitMix64's output function: a bijection on `u64` with full avalanche.
pub fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ring position of virtual node `replica` of the backend named `id`.
pub fn vnode_point(id: &str, replica: u32) -> u64 {
    let seed = fnv1a64(id.as_bytes());
    mix64(seed.wrapping_add((u64::from(replica) + 1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Ring position of a client address.
pub fn client_point(client: IpAddr) -> u64 {
    match client.to_canonical() {
        IpAddr::V4(v4) => mix64(fnv1a64(&v4.octets())),
        IpAddr::V6(v6) => mix64(fnv1a64(&v6.octets())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn mix64_matches_splitmix64() {
        // The first output of SplitMix64 seeded with 0 is mix64(GOLDEN_GAMMA).
        assert_eq!(mix64(GOLDEN_GAMMA), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn ipv4_mapped_ipv6_hashes_as_ipv4() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            client_point(IpAddr::V4(v4)),
            client_point(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            client_point(IpAddr::V4(v4)),
            client_point(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn points_are_pinned() {
        // Part of the contract (affinity survives upgrades): never change these. They were
        // checked against an independent Python implementation of the definitions above.
        assert_eq!(vnode_point("b0", 0), PINNED_VNODE);
        assert_eq!(
            client_point(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            PINNED_CLIENT
        );
    }

    const PINNED_VNODE: u64 = 0x69db_70e3_ca6a_b2a8;
    const PINNED_CLIENT: u64 = 0xe7a7_7091_5e3a_6bb4;
}

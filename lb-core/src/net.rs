//! Address ranges and the client-address rule for `X-Forwarded-For`.
//!
//! A balancer at the edge must not believe what a client writes in `X-Forwarded-For`: anyone can
//! send `X-Forwarded-For: 10.0.0.1`. So the client address is the TCP peer, unless the peer is
//! a proxy the operator trusts (`server.trusted_proxies`); then the list is read from the right,
//! skipping trusted hops, and the first untrusted address is the client. That is the rule of
//! nginx's `real_ip_recursive` and Envoy's `xff_num_trusted_hops`, by range instead of count.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a CIDR range could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("\"{0}\" is not an IP address")]
    Address(String),
    /// The prefix length is not a number or too long for the address family.
    #[error("prefix length \"{prefix}\" is not 0-{max}")]
    Prefix {
        /// The prefix as written.
        prefix: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits are set past the prefix (`10.0.0.1/8`): probably a typo for a host or a network.
    #[error("host bits are set past /{prefix}; the network is {network}")]
    HostBits {
        /// The prefix length.
        prefix: u8,
        /// The range as it was probably meant.
        network: String,
    },
}

/// An IP range such as `10.0.0.0/8` or `::1/128`; a bare address is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `network`/`prefix`.
    ///
    /// # Errors
    ///
    /// When the prefix is too long for the family, or bits past the prefix are set.
    pub fn try_new(network: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let network = network.to_canonical();
        let max = max_prefix(network);
        if prefix > max {
            return Err(CidrError::Prefix {
                prefix: prefix.to_string(),
                max,
            });
        }
        let masked = mask(network, prefix);
        if masked != network {
            return Err(CidrError::HostBits {
                prefix,
                network: Cidr {
                    network: masked,
                    prefix,
                }
                .to_string(),
            });
        }
        Ok(Self { network, prefix })
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the range. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as
    /// the IPv4 address they carry, since a dual-stack listener reports IPv4 peers that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_owned()))?;
        let max = max_prefix(network.to_canonical());
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|_| prefix.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| CidrError::Prefix {
                    prefix: prefix.to_owned(),
                    max,
                })?,
        };
        Cidr::try_new(network, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits.checked_shr(32 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(masked.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits.checked_shr(128 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(masked.into())
        }
    }
}

/// Whether any range of `trusted` holds `ip`.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|range| range.contains(ip))
}

/// The client's address for a request that came from `peer` with these `X-Forwarded-For`
/// values (each a comma-separated list, oldest hop first).
///
/// When `peer` is not trusted, it is the client, whatever the header says. When it is, the
/// addresses are read from the right, skipping trusted ones; the first untrusted one is the
/// client. An entry that is not an IP address stops the walk (the hop that wrote it cannot be
/// believed, so the last trusted hop is the best answer); so does the left end of the list.
///
/// ```
/// use lb_core::net::{Cidr, client_address};
///
/// let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
/// let peer = "10.0.0.2".parse().unwrap();
/// let header = ["6.6.6.6, 203.0.113.9, 10.0.0.7"];
/// assert_eq!(client_address(peer, header, &trusted), "203.0.113.9".parse::<std::net::IpAddr>().unwrap());
/// // An untrusted peer is the client, whatever it claims.
/// let stranger = "198.51.100.1".parse().unwrap();
/// assert_eq!(client_address(stranger, header, &trusted), stranger);
/// ```
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    trusted: &[Cidr],
) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for
        .into_iter()
        .rev()
        .flat_map(|value| value.rsplit(','))
    {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn parses_ranges_and_rejects_bad_ones() {
        let good = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.168.1.7", "192.168.1.7/32"),
            ("::1", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            (" 172.16.0.0/12 ", "172.16.0.0/12"),
            ("::ffff:10.0.0.0/8", "10.0.0.0/8"),
        ];
        for (text, shown) in good {
            let cidr: Cidr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cidr.to_string(), shown);
        }
        let bad = [
            ("10.0.0.0/33", "prefix length \"33\" is not 0-32"),
            ("10.0.0.0/-1", "prefix length \"-1\" is not 0-32"),
            ("10.0.0.0/+8", "prefix length \"+8\" is not 0-32"),
            ("10.0.0.0/", "prefix length \"\" is not 0-32"),
            ("::/129", "prefix length \"129\" is not 0-128"),
            (
                "10.0.0.1/8",
                "host bits are set past /8; the network is 10.0.0.0/8",
            ),
            ("example.com/8", "\"example.com\" is not an IP address"),
            ("", "\"\" is not an IP address"),
        ];
        for (text, message) in bad {
            let error = text.parse::<Cidr>().unwrap_err();
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn contains_matches_the_prefix_and_family() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
    }

    #[test]
    fn client_address_walks_trusted_hops_from_the_right() {
        let trusted = cidrs(&["10.0.0.0/8", "127.0.0.1"]);
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted peer: the header is ignored.
            ("203.0.113.5", &["1.2.3.4"], "203.0.113.5"),
            // Trusted peer, no header: the peer is all we know.
            ("10.0.0.1", &[], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // Several trusted hops, over two header lines.
            (
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.7", "10.9.9.9"],
                "198.51.100.7",
            ),
            // Every hop trusted: the left-most is the best we have.
            ("10.0.0.1", &["10.0.0.2, 10.0.0.3"], "10.0.0.2"),
            // Garbage stops the walk at the last address a trusted hop vouched for.
            ("10.0.0.1", &["1.1.1.1, nonsense, 10.0.0.4"], "10.0.0.4"),
        ];
        for (peer, header, want) in cases {
            let got = client_address(ip(peer), header.iter().copied(), &trusted);
            assert_eq!(got, ip(want), "{peer} {header:?}");
        }
        assert_eq!(
            client_address(ip("10.0.0.1"), ["1.1.1.1"], &[]),
            ip("10.0.0.1"),
            "nothing trusted: the peer"
        );
    }
}

//! Network addresses as policy sees them: CIDR blocks (`ip_allow`, `trusted_proxies`, the
//! egress `allow` list) and the address classes an egress policy denies, shared by both sides.
//! `ingress.rs` finds the client address of a request that came through trusted proxies (what
//! `http` needs); `egress.rs` holds the egress policy (what `effects` needs).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

mod egress;
mod ingress;

pub use egress::{EgressDenied, EgressPolicy};
pub use ingress::client_address;

/// A block of addresses, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an address or a CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || CidrError(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network = canonical(address.parse::<IpAddr>().map_err(|_| invalid())?);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(invalid)?,
            None => width,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address: a policy must not
/// be dodged by spelling.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub fn any_contains(blocks: &[Cidr], ip: IpAddr) -> bool {
    blocks.iter().any(|b| b.contains(ip))
}

/// The kinds of address an egress policy can deny by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// RFC 1918, shared address space (100.64.0.0/10), IPv6 unique local (fc00::/7).
    Private,
    /// 127.0.0.0/8, ::1, and the unspecified address (a connection to 0.0.0.0 reaches this host).
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// Cloud instance metadata services: 169.254.169.254, fd00:ec2::254, 100.100.100.200.
    Metadata,
}

impl AddressClass {
    pub const NAMES: &'static [&'static str] = &["private", "loopback", "link_local", "metadata"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "private" => Self::Private,
            "loopback" => Self::Loopback,
            "link_local" => Self::LinkLocal,
            "metadata" => Self::Metadata,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link_local",
            Self::Metadata => "metadata",
        }
    }

    /// Every class `ip` belongs to, the most specific first (metadata is also link-local or
    /// private). IPv4 written as IPv6, mapped (`::ffff:10.0.0.1`) or behind NAT64's
    /// `64:ff9b::/96`, is judged as that IPv4 address.
    pub fn of(ip: IpAddr) -> Vec<Self> {
        let ip = canonical(ip);
        let mut classes = Vec::new();
        match ip {
            IpAddr::V4(v4) => {
                if v4 == Ipv4Addr::new(169, 254, 169, 254)
                    || v4 == Ipv4Addr::new(100, 100, 100, 200)
                {
                    classes.push(Self::Metadata);
                }
                if v4.is_loopback() || v4.is_unspecified() {
                    classes.push(Self::Loopback);
                }
                if v4.is_link_local() {
                    classes.push(Self::LinkLocal);
                }
                let shared = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
                if v4.is_private() || shared {
                    classes.push(Self::Private);
                }
            }
            IpAddr::V6(v6) => {
                // NAT64's well-known prefix (64:ff9b::/96, RFC 6052): a gateway connects to the
                // IPv4 address in the last 32 bits, and DNS64 hands out such addresses for
                // names that only have an IPv4 one.
                if let [0x64, 0xff9b, 0, 0, 0, 0, high, low] = v6.segments() {
                    let embedded = Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
                    return Self::of(IpAddr::V4(embedded));
                }
                if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                    classes.push(Self::Metadata);
                }
                if v6.is_loopback() || v6.is_unspecified() {
                    classes.push(Self::Loopback);
                }
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    classes.push(Self::LinkLocal);
                }
                if (v6.segments()[0] & 0xfe00) == 0xfc00 {
                    classes.push(Self::Private);
                }
            }
        }
        classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let block: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(block.contains(ip("10.255.1.2")));
        assert!(block.contains(ip("::ffff:10.1.1.1")));
        assert!(!block.contains(ip("11.0.0.1")));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("2001:db8::1")));
        for bad in ["10.0.0.0/33", "10.0.0/8", "host", "::1/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}

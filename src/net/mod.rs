//! Network addresses as policy sees them: CIDR blocks (`ip_allow`, `trusted_proxies`, the
//! egress `allow` list), the address classes an egress policy denies, the client address of a
//! request that came through trusted proxies, and the egress policy itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

/// The address a request came from. Without trusted proxies, or when the peer is not one, it is
/// the peer: anyone can write `X-Forwarded-For`. From a trusted proxy, it is the rightmost
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left were written
/// by the client and prove nothing). `None` when that entry is no address (`unknown`, a name):
/// the client is unknown, and the proxy that wrote it must not stand in for it.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted_proxies: &[Cidr],
) -> Option<IpAddr> {
    let peer = canonical(peer);
    if !any_contains(trusted_proxies, peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        let ip = forwarded_address(hop).map(canonical)?;
        if !any_contains(trusted_proxies, ip) {
            return Some(ip);
        }
        nearest = ip;
    }
    Some(nearest)
}

/// One `X-Forwarded-For` entry as proxies write it: an address, IPv4 with a port
/// (`192.0.2.1:4711`), IPv6 bare or in brackets with or without a port (`[2001:db8::1]:4711`),
/// perhaps quoted.
fn forwarded_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
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

/// Which hosts `http`, `ci` and `email` steps may reach, judged on the address actually
/// connected to. Open when `deny` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub deny: Vec<AddressClass>,
    /// Blocks reachable even when their class is denied.
    pub allow_blocks: Vec<Cidr>,
    /// Host names (lower case) reachable whatever they resolve to; `*.example.com` matches
    /// every name under `example.com`.
    pub allow_hosts: Vec<String>,
}

/// A connection the egress policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress policy denies {ip} ({class})", class = class.as_str())]
pub struct EgressDenied {
    pub ip: IpAddr,
    pub class: AddressClass,
}

impl EgressPolicy {
    pub fn is_open(&self) -> bool {
        self.deny.is_empty()
    }

    /// An entry of `allow`: a CIDR block or address, else a host name.
    pub fn allow(&mut self, entry: &str) {
        match entry.parse::<Cidr>() {
            Ok(block) => self.allow_blocks.push(block),
            // Judged against names without their root dot: an entry keeps none either.
            Err(_) => self
                .allow_hosts
                .push(entry.trim().trim_end_matches('.').to_ascii_lowercase()),
        }
    }

    /// Whether `host` is allowed by name, whatever it resolves to.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.')),
                None => *allowed == host,
            })
    }

    /// Whether a connection to `ip` (resolved from `host`, or the host itself) may be made.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), EgressDenied> {
        if self.is_open() || self.allows_host(host) || any_contains(&self.allow_blocks, ip) {
            return Ok(());
        }
        match AddressClass::of(ip)
            .into_iter()
            .find(|class| self.deny.contains(class))
        {
            Some(class) => Err(EgressDenied {
                ip: canonical(ip),
                class,
            }),
            None => Ok(()),
        }
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

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address_from_a_trusted_peer() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_address(ip("203.0.113.5"), ["198.51.100.1"], &trusted),
            Some(ip("203.0.113.5"))
        );
        // A client-written entry left of the real one is ignored.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                ["1.1.1.1, 198.51.100.1", "10.0.0.3"],
                &trusted
            ),
            Some(ip("198.51.100.1"))
        );
        // Only proxies: the leftmost of them.
        assert_eq!(
            client_address(ip("10.0.0.2"), ["10.0.0.9"], &trusted),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), [], &[]),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn forwarded_entries_with_ports_brackets_and_quotes_name_their_address() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ip("10.0.0.2");
        for (entry, client) in [
            ("203.0.113.9:41234", "203.0.113.9"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            ("\"[2001:db8::7]:443\"", "2001:db8::7"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            (" 203.0.113.9 ", "203.0.113.9"),
        ] {
            assert_eq!(
                client_address(proxy, [entry], &trusted),
                Some(ip(client)),
                "{entry}"
            );
        }
        // A trusted proxy written with its port is still a trusted proxy.
        assert_eq!(
            client_address(proxy, ["203.0.113.9, 10.0.0.3:8080"], &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn a_forwarded_entry_that_is_no_address_leaves_the_client_unknown() {
        // Where the client should be there is `unknown`, a name or garbage: the proxy that wrote
        // it is not the client, and must not be taken for it (it may well be in `ip_allow`).
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        for header in [
            "unknown",
            "junk, 10.0.0.9",
            "203.0.113.9:port",
            "[::1",
            "_hidden",
        ] {
            assert_eq!(
                client_address(ip("10.0.0.2"), [header], &trusted),
                None,
                "{header}"
            );
        }
        // Garbage left of the real client is the client's own writing and changes nothing.
        assert_eq!(
            client_address(ip("10.0.0.2"), ["junk, 203.0.113.9"], &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn egress_denies_classes_unless_allowed() {
        let mut policy = EgressPolicy {
            deny: vec![
                AddressClass::Private,
                AddressClass::Loopback,
                AddressClass::LinkLocal,
                AddressClass::Metadata,
            ],
            ..EgressPolicy::default()
        };
        assert_eq!(
            policy.check("x", ip("127.0.0.1")).unwrap_err().to_string(),
            "egress policy denies 127.0.0.1 (loopback)"
        );
        assert_eq!(
            policy.check("x", ip("169.254.169.254")).unwrap_err().class,
            AddressClass::Metadata
        );
        assert_eq!(
            policy
                .check("x", ip("::ffff:10.0.0.1"))
                .unwrap_err()
                .to_string(),
            "egress policy denies 10.0.0.1 (private)"
        );
        assert!(policy.check("x", ip("0.0.0.0")).is_err());
        assert!(policy.check("x", ip("fe80::1")).is_err());
        assert!(policy.check("x", ip("fd12::1")).is_err());
        assert!(policy.check("x", ip("100.64.0.1")).is_err());
        assert!(policy.check("x", ip("93.184.215.14")).is_ok());
        // Through a NAT64 gateway (and names DNS64 gives an AAAA) the IPv4 address is reached.
        assert_eq!(
            policy.check("x", ip("64:ff9b::a00:1")).unwrap_err().class,
            AddressClass::Private
        );
        assert_eq!(
            policy
                .check("x", ip("64:ff9b::a9fe:a9fe"))
                .unwrap_err()
                .class,
            AddressClass::Metadata
        );
        assert!(policy.check("x", ip("64:ff9b::127.0.0.1")).is_err());
        assert!(policy.check("x", ip("64:ff9b::808:808")).is_ok());
        policy.allow("10.0.0.0/8");
        policy.allow("*.corp.example");
        policy.allow("crm.internal");
        assert!(policy.check("x", ip("10.0.0.1")).is_ok());
        assert!(policy.check("a.corp.example", ip("192.168.1.1")).is_ok());
        assert!(policy.check("CRM.internal.", ip("192.168.1.1")).is_ok());
        policy.allow("Build.Internal.");
        assert!(policy.check("build.internal", ip("192.168.1.2")).is_ok());
        assert!(policy.check("corp.example", ip("192.168.1.1")).is_err());
        assert!(policy.check("xcorp.example", ip("192.168.1.1")).is_err());
        // Only metadata denied: other link-local addresses pass.
        let metadata_only = EgressPolicy {
            deny: vec![AddressClass::Metadata],
            ..EgressPolicy::default()
        };
        assert!(metadata_only.check("x", ip("169.254.1.1")).is_ok());
        assert!(metadata_only.check("x", ip("169.254.169.254")).is_err());
        assert!(EgressPolicy::default().check("x", ip("127.0.0.1")).is_ok());
    }
}

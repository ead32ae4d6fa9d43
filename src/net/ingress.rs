//! The client address of a request: the peer, or behind trusted proxies the nearest
//! `X-Forwarded-For` entry that is not one of them.

use std::net::{IpAddr, Ipv6Addr};

use super::{Cidr, any_contains, canonical};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
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
}

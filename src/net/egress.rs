//! The egress policy: which resolved addresses outgoing `http`, `ci` and `email` steps may
//! connect to, judged by address class with allowed blocks and host names.

use std::net::IpAddr;

use super::{AddressClass, Cidr, any_contains, canonical};

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

//! The SSRF guard: receivers must be public addresses. Loopback, private, link-local,
//! carrier-grade NAT, multicast, documentation and cloud metadata ranges are refused unless
//! the operator's allow-list (CIDRs) admits them.
//!
//! The guard is applied after DNS resolution, on the addresses actually connected to, so a
//! name that later re-resolves to a private address (DNS rebinding) is still refused.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Debug, Default)]
pub struct TargetGuard {
    allowed: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{address} is a {kind} address, which receivers may not use")]
pub struct TargetRefused {
    pub address: IpAddr,
    pub kind: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a CIDR (e.g. 127.0.0.0/8 or ::1/128)")]
pub struct InvalidCidr(String);

impl TargetGuard {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses a comma-separated CIDR list as found in `HERALD_ALLOWED_TARGET_CIDRS`.
    pub fn from_list(list: &str) -> Result<Self, InvalidCidr> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                IpNet::from_str(item)
                    .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                    .map_err(|_| InvalidCidr(item.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    pub fn check(&self, address: IpAddr) -> Result<(), TargetRefused> {
        let address = canonical(address);
        match special_range(address) {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|net| net.contains(&address)) => Ok(()),
            Some(kind) => Err(TargetRefused { address, kind }),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn special_range(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    if address.is_loopback() {
        Some("loopback")
    } else if address.is_private() {
        Some("private")
    } else if address.is_link_local() {
        // Includes 169.254.169.254, the metadata service of most clouds.
        Some("link-local or metadata")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if address.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if address.is_broadcast() || address.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if address.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignment")
    } else {
        None
    }
}

fn special_v6(address: Ipv6Addr) -> Option<&'static str> {
    let first = address.segments()[0];
    if address.is_loopback() {
        Some("loopback")
    } else if address.is_unspecified() {
        Some("unspecified")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("unique local (private)")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if address.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && address.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if first == 0x0064 && address.segments()[1] == 0xff9b {
        // NAT64 can reach any IPv4 address, private ones included.
        Some("NAT64")
    } else if address.segments()[..6] == [0, 0, 0, 0, 0, 0] {
        Some("IPv4-compatible")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn refuses_internal_ranges_by_default() {
        let guard = TargetGuard::default();
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(guard.check(ip(address)).is_err(), "{address} admitted");
        }
    }

    #[test]
    fn admits_public_addresses() {
        let guard = TargetGuard::default();
        for address in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert_eq!(guard.check(ip(address)), Ok(()), "{address} refused");
        }
    }

    #[test]
    fn allow_list_admits_only_what_it_names() {
        let guard = TargetGuard::from_list(" 127.0.0.0/8, ::1 ").expect("valid list");
        assert_eq!(guard.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(guard.check(ip("::ffff:127.0.0.2")), Ok(()));
        assert_eq!(guard.check(ip("::1")), Ok(()));
        assert!(guard.check(ip("10.0.0.1")).is_err());
        assert!(TargetGuard::from_list("10.0.0.0/33").is_err());
        assert!(TargetGuard::from_list("")
            .expect("empty is fine")
            .allowed
            .is_empty());
    }

    proptest! {
        #[test]
        fn every_private_ipv4_is_refused(b in 0u8..=255, c in 0u8..=255, d in 0u8..=255) {
            let guard = TargetGuard::default();
            prop_assert!(guard.check(IpAddr::V4(Ipv4Addr::new(10, b, c, d))).is_err());
            prop_assert!(guard.check(IpAddr::V4(Ipv4Addr::new(127, b, c, d))).is_err());
            prop_assert!(guard.check(IpAddr::V4(Ipv4Addr::new(192, 168, c, d))).is_err());
            prop_assert!(guard.check(IpAddr::V4(Ipv4Addr::new(172, 16 + (b % 16), c, d))).is_err());
            let mapped = Ipv4Addr::new(10, b, c, d).to_ipv6_mapped();
            prop_assert!(guard.check(IpAddr::V6(mapped)).is_err());
        }
    }
}

//! The SSRF guard: receivers must be public addresses. Loopback, private, link-local,
//! carrier-grade NAT, unspecified, multicast, broadcast, reserved, documentation,
//! benchmarking and cloud metadata ranges are refused unless the operator's allow-list (CIDRs)
//! admits them. IPv6 is refused outside global unicast (`2000::/3`), and inside it where the
//! IANA special-purpose registry sets ranges apart.
//!
//! The guard is applied after DNS resolution, on the addresses actually connected to, so a
//! name that later re-resolves to a private address (DNS rebinding) is still refused.
//!
//! An IPv6 address can carry an IPv4 address, and packets sent to it can end up at that IPv4
//! host: IPv4-mapped (`::ffff:a.b.c.d`, which a dual-stack socket connects to over IPv4),
//! IPv4-compatible (`::a.b.c.d`, deprecated), 6to4 (`2002:AABB:CCDD::/48`), NAT64 through the
//! well-known prefix (`64:ff9b::a.b.c.d`) and Teredo (`2001:0:server:…:client`, the client
//! XORed with ones). Such an address is judged exactly as the IPv4 addresses it carries: it is
//! admitted when every one of them would be, and refused when any one would be. The
//! local-use NAT64 prefix (`64:ff9b:1::/48`) is refused outright: where the IPv4 address
//! sits in it, and what it is translated to, are the choice of whoever runs the translator.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Debug, Default)]
pub struct TargetGuard {
    allowed: Vec<IpNet>,
}

/// An address receivers may not use, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct TargetRefused {
    pub address: IpAddr,
    /// The refused range, as a noun phrase: "a loopback address".
    pub kind: &'static str,
    /// Set when `address` was refused for an IPv4 address it carries rather than for itself.
    pub carried: Option<Carried>,
}

/// An IPv4 address carried inside an IPv6 address, and the form that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    pub form: &'static str,
    pub address: Ipv4Addr,
}

impl fmt::Display for TargetRefused {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { address, kind, .. } = self;
        match self.carried {
            None => write!(formatter, "{address} is {kind}"),
            Some(Carried {
                form,
                address: carried,
            }) => write!(formatter, "{address} carries {carried} ({form}), {kind}"),
        }?;
        formatter.write_str(", which receivers may not use")
    }
}

impl std::error::Error for TargetRefused {}

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

    /// Admits `address` when it is public or the allow-list names it.
    ///
    /// An IPv6 address carrying IPv4 addresses (see the module documentation) is admitted when
    /// the allow-list names the IPv6 address itself, or else when each IPv4 address it carries
    /// is public or named by the allow-list. So an operator who admits `127.0.0.0/8` also
    /// admits `::ffff:127.0.0.1`, `64:ff9b::7f00:1` and `2002:7f00:1::`: they reach the same
    /// host. One who admits `2002::/16` trusts whatever 6to4 carries.
    pub fn check(&self, address: IpAddr) -> Result<(), TargetRefused> {
        if self.admits(address) {
            return Ok(());
        }
        let v6 = match address {
            IpAddr::V4(v4) => {
                return match refused_v4(v4) {
                    None => Ok(()),
                    Some(kind) => Err(TargetRefused {
                        address,
                        kind,
                        carried: None,
                    }),
                }
            }
            IpAddr::V6(v6) => v6,
        };
        let carried = carried_v4(v6);
        if carried.is_empty() {
            return match refused_v6(v6) {
                None => Ok(()),
                Some(kind) => Err(TargetRefused {
                    address,
                    kind,
                    carried: None,
                }),
            };
        }
        for inside in carried {
            if let Some(kind) = refused_v4(inside.address) {
                if !self.admits(IpAddr::V4(inside.address)) {
                    return Err(TargetRefused {
                        address,
                        kind,
                        carried: Some(inside),
                    });
                }
            }
        }
        Ok(())
    }

    fn admits(&self, address: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&address))
    }
}

/// Refused IPv4 ranges; the first match names the kind. They are the IANA special-purpose
/// registry's ranges that are not globally reachable (and all of `192.0.0.0/24`, even its few
/// global anycast addresses), multicast, and Azure's host address.
#[rustfmt::skip]
const REFUSED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "an unspecified (\"this network\") address"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "a private address"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "a carrier-grade NAT address"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "a loopback address"),
    // 169.254.169.254 is the metadata service of most clouds.
    (Ipv4Addr::new(169, 254, 0, 0), 16, "a link-local or cloud metadata address"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "a private address"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "an IETF protocol assignment"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "a documentation address"),
    // A relay there would forward to a 6to4 address of the sender's choosing.
    (Ipv4Addr::new(192, 88, 99, 0), 24, "a deprecated 6to4 relay anycast address"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "a private address"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "a benchmarking address"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "a documentation address"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "a documentation address"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "a multicast address"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "the broadcast address"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "a reserved address"),
    // Public, but answered only inside Azure, by the host a VM runs on; its WireServer hands
    // out the VM's configuration, as 169.254.169.254 does elsewhere.
    (Ipv4Addr::new(168, 63, 129, 16), 32, "a cloud platform (Azure host) address"),
];

/// Refused IPv6 ranges; the first match names the kind. Everything outside global unicast
/// (`2000::/3`) is refused as well, so the rows outside it are there to name the kind. Forms
/// that carry an IPv4 address (Teredo, inside `2001::/23`, among them) never get here.
#[rustfmt::skip]
const REFUSED_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "an unspecified address"),
    (Ipv6Addr::LOCALHOST, 128, "a loopback address"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "a local-use NAT64 address"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "a discard-only address"),
    // Benchmarking, ORCHID and anycast services: none is a webhook receiver.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "an IETF protocol assignment"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "a documentation address"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "a documentation address"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "a unique local (private) address"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "a link-local address"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "a site-local (deprecated) address"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "a multicast address"),
];

fn refused_v4(address: Ipv4Addr) -> Option<&'static str> {
    let address = u32::from(address);
    REFUSED_V4
        .iter()
        .find(|(network, length, _)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*length)).unwrap_or(0);
            address & mask == u32::from(*network)
        })
        .map(|(_, _, kind)| *kind)
}

fn refused_v6(address: Ipv6Addr) -> Option<&'static str> {
    let address = u128::from(address);
    let inside = |network: Ipv6Addr, length: u8| {
        let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
        address & mask == u128::from(network)
    };
    REFUSED_V6
        .iter()
        .find(|(network, length, _)| inside(*network, *length))
        .map(|(_, _, kind)| *kind)
        .or_else(|| {
            // Everything else outside 2000::/3 is unassigned or reserved by the IETF.
            (!inside(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3))
                .then_some("a reserved (not global unicast) address")
        })
}

/// The IPv4 addresses `address` carries; empty when it is none of the carrying forms.
fn carried_v4(address: Ipv6Addr) -> Vec<Carried> {
    let bits = u128::from(address);
    // Truncating casts pick the 32 bits that hold the IPv4 address.
    let at = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    let carried = |form, address| Carried { form, address };
    match address.segments() {
        [0, 0, 0, 0, 0, 0xffff, _, _] => vec![carried("IPv4-mapped", at(0))],
        // `::` and `::1` are the unspecified and loopback addresses, not IPv4-compatible ones.
        [0, 0, 0, 0, 0, 0, _, _] if bits > 1 => vec![carried("IPv4-compatible", at(0))],
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![carried("NAT64", at(0))],
        [0x2002, ..] => vec![carried("6to4", at(80))],
        [0x2001, 0, ..] => vec![
            carried("Teredo server", at(64)),
            carried("Teredo client", Ipv4Addr::from(!(bits as u32))),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;

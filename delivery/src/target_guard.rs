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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().expect("ipv4")
    }

    /// A public address (Microsoft's former Teredo server), for the other half of a Teredo
    /// address.
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(65, 54, 227, 120);

    /// Every IPv6 form carrying `address`, named.
    fn embeddings(address: Ipv4Addr) -> [(&'static str, Ipv6Addr); 6] {
        let bits = u128::from(u32::from(address));
        let teredo = |server: Ipv4Addr, client: Ipv4Addr| {
            Ipv6Addr::from(
                0x2001_0000_u128 << 96
                    | u128::from(u32::from(server)) << 64
                    | 0x8000_63bf_u128 << 32
                    | u128::from(!u32::from(client)),
            )
        };
        [
            ("mapped", address.to_ipv6_mapped()),
            ("compatible", address.to_ipv6_compatible()),
            ("6to4", Ipv6Addr::from(0x2002_u128 << 112 | bits << 80 | 1)),
            ("NAT64", Ipv6Addr::from(0x0064_ff9b_u128 << 96 | bits)),
            ("Teredo client", teredo(PUBLIC, address)),
            ("Teredo server", teredo(address, PUBLIC)),
        ]
    }

    /// The ranges this guard must refuse, written independently of the table it uses.
    const MUST_REFUSE_V4: &[&str] = &[
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "168.63.129.16/32",
    ];

    fn in_must_refuse(address: Ipv4Addr) -> bool {
        MUST_REFUSE_V4.iter().any(|net| {
            net.parse::<ipnet::Ipv4Net>()
                .expect("cidr")
                .contains(&address)
        })
    }

    fn address_in(net: &str, host_bits: u32) -> Ipv4Addr {
        let net: ipnet::Ipv4Net = net.parse().expect("cidr");
        Ipv4Addr::from(u32::from(net.network()) | (host_bits & u32::from(net.hostmask())))
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
            "100.100.100.200",
            "168.63.129.16",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "192.0.0.170",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "::",
            "::1",
            "fd00::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff::1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:2::808:808",
            "1::1",
            "4000::1",
            "5f00::1",
            "e000::1",
            "::ffff:0:808:808",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::",
            // Wikipedia's Teredo example: server 65.54.227.120, client 192.0.2.45.
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(guard.check(ip(address)).is_err(), "{address} admitted");
        }
    }

    #[test]
    fn admits_public_addresses_and_public_ones_carried() {
        let guard = TargetGuard::default();
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2001:200::1",
            "2a00:1450:4001::1",
            "3fff:1000::1",
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            // Teredo, server 65.54.227.120, client 8.8.8.8.
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert_eq!(guard.check(ip(address)), Ok(()), "{address} refused");
        }
    }

    #[test]
    fn boundaries_of_every_refused_ipv4_range() {
        let guard = TargetGuard::default();
        for net in MUST_REFUSE_V4 {
            let net: ipnet::Ipv4Net = net.parse().expect("cidr");
            for inside in [net.network(), net.broadcast()] {
                assert!(
                    guard.check(IpAddr::V4(inside)).is_err(),
                    "{inside} admitted"
                );
            }
            let before = u32::from(net.network()).checked_sub(1).map(Ipv4Addr::from);
            let after = u32::from(net.broadcast())
                .checked_add(1)
                .map(Ipv4Addr::from);
            for outside in [before, after].into_iter().flatten() {
                let expected = in_must_refuse(outside);
                assert_eq!(
                    guard.check(IpAddr::V4(outside)).is_err(),
                    expected,
                    "{outside}, next to {net}"
                );
            }
        }
    }

    #[test]
    fn names_the_range_refused() {
        let guard = TargetGuard::default();
        for (address, kind) in [
            ("0.1.2.3", "an unspecified (\"this network\") address"),
            ("100.100.100.200", "a carrier-grade NAT address"),
            ("169.254.169.254", "a link-local or cloud metadata address"),
            ("255.255.255.255", "the broadcast address"),
            ("255.255.255.254", "a reserved address"),
            ("168.63.129.16", "a cloud platform (Azure host) address"),
            ("::", "an unspecified address"),
            ("::1", "a loopback address"),
            ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
            ("100::1", "a discard-only address"),
            ("2001:2::1", "an IETF protocol assignment"),
            ("2001:db8::1", "a documentation address"),
            ("3fff::1", "a documentation address"),
            ("fd00:ec2::254", "a unique local (private) address"),
            ("fe80::1", "a link-local address"),
            ("fec0::1", "a site-local (deprecated) address"),
            ("ff02::1", "a multicast address"),
            ("4000::1", "a reserved (not global unicast) address"),
            ("::ffff:10.0.0.1", "a private address"),
        ] {
            let refused = guard.check(ip(address)).expect_err(address);
            assert_eq!(refused.kind, kind, "{address}");
        }
    }

    #[test]
    fn names_what_was_refused_and_what_carried_it() {
        let guard = TargetGuard::default();
        let refused = guard
            .check(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
            .expect_err("documentation client");
        assert_eq!(
            refused.carried,
            Some(Carried {
                form: "Teredo client",
                address: v4("192.0.2.45")
            })
        );
        assert_eq!(
            refused.to_string(),
            "2001:0:4136:e378:8000:63bf:3fff:fdd2 carries 192.0.2.45 (Teredo client), \
             a documentation address, which receivers may not use"
        );
        let refused = guard.check(ip("10.0.0.1")).expect_err("private");
        assert_eq!(
            refused.to_string(),
            "10.0.0.1 is a private address, which receivers may not use"
        );
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

    #[test]
    fn allow_listed_ipv4_admits_the_forms_carrying_it_and_nothing_else() {
        let guard = TargetGuard::from_list("127.0.0.0/8").expect("valid list");
        for (form, address) in embeddings(v4("127.0.0.1")) {
            assert_eq!(guard.check(IpAddr::V6(address)), Ok(()), "{form} {address}");
        }
        for (form, address) in embeddings(v4("10.0.0.1")) {
            assert!(
                guard.check(IpAddr::V6(address)).is_err(),
                "{form} {address}"
            );
        }
        // Not the IPv6 loopback, which carries no IPv4 address.
        assert!(guard.check(ip("::1")).is_err());
        // Not through the local-use NAT64 prefix, whose translation is someone else's choice.
        assert!(guard.check(ip("64:ff9b:1::7f00:1")).is_err());
        // Teredo carries two addresses; both must be admitted.
        let mixed = "2001:0:7f00:1:8000:63bf:f5ff:fffe"; // server 127.0.0.1, client 10.0.0.1
        let refused = guard.check(ip(mixed)).expect_err("private client");
        assert_eq!(
            refused.carried.map(|inside| inside.address),
            Some(v4("10.0.0.1"))
        );
    }

    #[test]
    fn allow_listed_ipv6_range_admits_what_it_names_whatever_it_carries() {
        let guard = TargetGuard::from_list("2002::/16, fd00::/8").expect("valid list");
        assert_eq!(guard.check(ip("2002:a00:1::")), Ok(()));
        assert_eq!(guard.check(ip("fd00::1")), Ok(()));
        assert!(guard.check(ip("fc00::1")).is_err());
        assert!(guard.check(ip("64:ff9b::a00:1")).is_err());
    }

    proptest! {
        #[test]
        fn every_form_carrying_a_refused_ipv4_is_refused(
            net in prop::sample::select(MUST_REFUSE_V4),
            host_bits in any::<u32>(),
        ) {
            let guard = TargetGuard::default();
            let address = address_in(net, host_bits);
            prop_assert!(guard.check(IpAddr::V4(address)).is_err(), "{} admitted", address);
            for (form, carrying) in embeddings(address) {
                prop_assert!(
                    guard.check(IpAddr::V6(carrying)).is_err(),
                    "{} ({} of {}) admitted", carrying, form, address
                );
            }
        }

        #[test]
        fn every_form_carrying_a_public_ipv4_is_admitted(
            address in any::<u32>()
                .prop_map(Ipv4Addr::from)
                .prop_filter("public", |address| !in_must_refuse(*address)),
        ) {
            let guard = TargetGuard::default();
            prop_assert_eq!(guard.check(IpAddr::V4(address)), Ok(()));
            for (form, carrying) in embeddings(address) {
                prop_assert_eq!(
                    guard.check(IpAddr::V6(carrying)),
                    Ok(()),
                    "{} ({} of {})", carrying, form, address
                );
            }
        }

        /// The rule itself: a form carrying an IPv4 address gets that address's verdict, with
        /// or without an allow-list.
        #[test]
        fn a_carrying_form_is_judged_as_the_ipv4_it_carries(
            address in any::<u32>().prop_map(Ipv4Addr::from),
            allow_list in prop::sample::select(&["", "127.0.0.0/8", "10.0.0.0/8, 169.254.0.0/16"][..]),
        ) {
            let guard = TargetGuard::from_list(allow_list).expect("valid list");
            let verdict = guard.check(IpAddr::V4(address)).is_ok();
            for (form, carrying) in embeddings(address) {
                prop_assert_eq!(
                    guard.check(IpAddr::V6(carrying)).is_ok(),
                    verdict,
                    "{} ({} of {})", carrying, form, address
                );
            }
        }

        #[test]
        fn ipv4_is_refused_exactly_in_the_refused_ranges(address in any::<u32>()) {
            let address = Ipv4Addr::from(address);
            prop_assert_eq!(
                TargetGuard::default().check(IpAddr::V4(address)).is_err(),
                in_must_refuse(address),
                "{}", address
            );
        }

        /// `2400::/6` holds only addresses the regional registries hand out.
        #[test]
        fn registry_allocated_ipv6_is_admitted(low in any::<u128>()) {
            let address = Ipv6Addr::from(0x2400_u128 << 112 | (low >> 6));
            prop_assert_eq!(TargetGuard::default().check(IpAddr::V6(address)), Ok(()));
        }

        #[test]
        fn ipv6_outside_global_unicast_is_refused_unless_it_carries_ipv4(bits in any::<u128>()) {
            // Replace the top three bits with anything but 001 (2000::/3).
            let top = [0b000, 0b010, 0b011, 0b100, 0b101, 0b110, 0b111][(bits % 7) as usize];
            let address = Ipv6Addr::from(top << 125 | (bits >> 3));
            prop_assume!(carried_v4(address).is_empty());
            prop_assert!(TargetGuard::default().check(IpAddr::V6(address)).is_err(), "{}", address);
        }
    }
}

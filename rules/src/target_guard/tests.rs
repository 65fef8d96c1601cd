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

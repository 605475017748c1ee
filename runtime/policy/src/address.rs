//! Which network addresses are public, and what the others are: the host asks the policy about
//! every non-public address an HTTP request would connect to (`net.connect` on an
//! [`Scope::Address`](crate::Scope::Address)), so a granted host name that resolves to
//! loopback, a private network or a cloud metadata service is refused unless the operator grants
//! that address explicitly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// What kind of address an IP address is. Every kind but [`AddressKind::Public`] needs an
/// explicit `net.connect` grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressKind {
    /// Routable on the internet.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, and the shared `100.64.0.0/10`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// A cloud instance metadata service: `169.254.169.254`, `fd00:ec2::254`.
    Metadata,
    /// Reserved or documentation ranges that are never a real destination: `192.0.0.0/24`,
    /// `192.0.2.0/24`, `198.18.0.0/15`, `198.51.100.0/24`, `203.0.113.0/24`, `240.0.0.0/4`,
    /// `2001:db8::/32`, `100::/64`, site-local `fec0::/10`; and the IPv6 transition ranges
    /// whose embedded IPv4 address is public or cannot be told for sure (local-use NAT64
    /// `64:ff9b:1::/48`, Teredo `2001::/32`).
    Reserved,
}

impl AddressKind {
    /// The kind of `ip`. An IPv6 address that carries an IPv4 address is that address's kind:
    /// IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
    /// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::/48`, so that
    /// `64:ff9b::a9fe:a9fe` is the metadata address. The transition ranges whose IPv4 cannot
    /// be read for sure are never public.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Self {
        let [a, b, c, _] = ip.octets();
        if ip == Ipv4Addr::new(169, 254, 169, 254) {
            Self::Metadata
        } else if ip.is_loopback() {
            Self::Loopback
        } else if a == 0 {
            Self::Unspecified
        } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
            Self::Private
        } else if ip.is_link_local() {
            Self::LinkLocal
        } else if ip.is_multicast() {
            Self::Multicast
        } else if ip.is_broadcast() {
            Self::Broadcast
        } else if (a, b, c) == (192, 0, 0)
            || ip.is_documentation()
            || (a == 198 && (b == 18 || b == 19))
            || a >= 240
        {
            Self::Reserved
        } else {
            Self::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Self {
        let s = ip.segments();
        let v4 = |hi: u16, lo: u16| {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            Ipv4Addr::new(a, b, c, d)
        };
        // Translation and tunnelling prefixes: the IPv4 address inside decides.
        if s[..6] == [0, 0, 0, 0, 0xffff, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
            return Self::of_v4(v4(s[6], s[7]));
        }
        if s[0] == 0x2002 {
            return Self::of_v4(v4(s[1], s[2]));
        }
        // Local-use NAT64 (its IPv4 sits where the operator's prefix length puts it) and
        // Teredo (a client address obfuscated behind a relay): a non-public IPv4 in the usual
        // place is its kind, anything else reserved, never public.
        if (s[0], s[1], s[2]) == (0x64, 0xff9b, 1) {
            return Self::never_public(Self::of_v4(v4(s[6], s[7])));
        }
        if (s[0], s[1]) == (0x2001, 0) {
            return Self::never_public(Self::of_v4(v4(!s[6], !s[7])));
        }
        if s[0] & 0xffc0 == 0xfec0 {
            return Self::Reserved;
        }
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            Self::Metadata
        } else if ip.is_loopback() {
            Self::Loopback
        } else if ip.is_unspecified() {
            Self::Unspecified
        } else if ip.is_multicast() {
            Self::Multicast
        } else if ip.is_unicast_link_local() {
            Self::LinkLocal
        } else if ip.is_unique_local() {
            Self::UniqueLocal
        } else if (s[0], s[1]) == (0x2001, 0xdb8) || (s[0], s[1], s[2], s[3]) == (0x100, 0, 0, 0) {
            Self::Reserved
        } else if let Some(v4) = ip.to_ipv4().filter(|_| s[..6].iter().all(|&x| x == 0)) {
            // IPv4-compatible (deprecated `::a.b.c.d`): as its IPv4 address.
            Self::of_v4(v4)
        } else {
            Self::Public
        }
    }

    /// `kind`, or [`AddressKind::Reserved`] in its place when it is public.
    fn never_public(kind: Self) -> Self {
        if kind.is_public() {
            Self::Reserved
        } else {
            kind
        }
    }

    /// The name policies see as `resource.kind`, e.g. `loopback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::UniqueLocal => "unique-local",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Metadata => "metadata",
            Self::Reserved => "reserved",
        }
    }

    /// Whether connecting needs no `net.connect` grant.
    pub fn is_public(self) -> bool {
        self == Self::Public
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> AddressKind {
        AddressKind::of(text.parse().unwrap())
    }

    // Verifies: FC-POL-1708, FC-SEC-2003, FC-SEC-2012
    #[test]
    fn special_ranges_are_never_public() {
        for (text, expected) in [
            ("127.0.0.1", AddressKind::Loopback),
            ("127.255.0.9", AddressKind::Loopback),
            ("::1", AddressKind::Loopback),
            ("::ffff:127.0.0.1", AddressKind::Loopback),
            ("10.1.2.3", AddressKind::Private),
            ("172.16.0.1", AddressKind::Private),
            ("172.31.255.255", AddressKind::Private),
            ("192.168.1.1", AddressKind::Private),
            ("100.64.0.1", AddressKind::Private),
            ("::ffff:10.0.0.1", AddressKind::Private),
            ("169.254.1.1", AddressKind::LinkLocal),
            ("fe80::1", AddressKind::LinkLocal),
            ("fc00::1", AddressKind::UniqueLocal),
            ("fd12:3456::1", AddressKind::UniqueLocal),
            ("0.0.0.0", AddressKind::Unspecified),
            ("0.1.2.3", AddressKind::Unspecified),
            ("::", AddressKind::Unspecified),
            ("224.0.0.1", AddressKind::Multicast),
            ("ff02::1", AddressKind::Multicast),
            ("255.255.255.255", AddressKind::Broadcast),
            ("169.254.169.254", AddressKind::Metadata),
            ("::ffff:169.254.169.254", AddressKind::Metadata),
            ("fd00:ec2::254", AddressKind::Metadata),
            ("192.0.2.1", AddressKind::Reserved),
            ("198.18.0.1", AddressKind::Reserved),
            ("240.0.0.1", AddressKind::Reserved),
            ("2001:db8::1", AddressKind::Reserved),
            ("::127.0.0.1", AddressKind::Loopback),
        ] {
            assert_eq!(kind(text), expected, "{text}");
            assert!(!kind(text).is_public(), "{text}");
        }
    }

    // Verifies: FC-POL-1708, FC-SEC-2003
    #[test]
    fn an_embedded_ipv4_address_decides_and_transition_ranges_are_never_public() {
        for (text, expected) in [
            // NAT64 64:ff9b::/96: the metadata service, loopback, private, and a public one.
            ("64:ff9b::a9fe:a9fe", AddressKind::Metadata),
            ("64:ff9b::169.254.169.254", AddressKind::Metadata),
            ("64:ff9b::7f00:1", AddressKind::Loopback),
            ("64:ff9b::10.0.0.1", AddressKind::Private),
            ("64:ff9b::8.8.8.8", AddressKind::Public),
            // Local-use NAT64 64:ff9b:1::/48: never public.
            ("64:ff9b:1::a9fe:a9fe", AddressKind::Metadata),
            ("64:ff9b:1::192.168.0.1", AddressKind::Private),
            ("64:ff9b:1::8.8.8.8", AddressKind::Reserved),
            ("64:ff9b:1:abcd::808:808", AddressKind::Reserved),
            // 6to4 2002::/16: the IPv4 in bits 16..48.
            ("2002:a9fe:a9fe::1", AddressKind::Metadata),
            ("2002:7f00:1::", AddressKind::Loopback),
            ("2002:c0a8:101::1", AddressKind::Private),
            ("2002:808:808::1", AddressKind::Public),
            // Teredo 2001::/32: the client's IPv4, obfuscated in the last 32 bits.
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                AddressKind::Metadata,
            ),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                AddressKind::Loopback,
            ),
            (
                "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
                AddressKind::Reserved,
            ),
            // IPv4-translated ::ffff:0:a.b.c.d.
            ("::ffff:0:a9fe:a9fe", AddressKind::Metadata),
            ("::ffff:0:127.0.0.1", AddressKind::Loopback),
            // Site-local fec0::/10, deprecated.
            ("fec0::1", AddressKind::Reserved),
            ("feff:ffff::1", AddressKind::Reserved),
        ] {
            assert_eq!(kind(text), expected, "{text}");
        }
    }

    // Verifies: FC-POL-1708, FC-SEC-2003
    #[test]
    fn internet_addresses_are_public() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(kind(text), AddressKind::Public, "{text}");
        }
    }
}

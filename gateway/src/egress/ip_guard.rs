//! What kind of address an IP address is, and whether egress may reach it.
//!
//! Only globally reachable unicast addresses are [`AddressClass::Global`]; everything else
//! (loopback, private ranges, link-local cloud metadata, CGNAT, multicast, documentation and
//! benchmarking ranges, reserved space) is refused unless a policy allows the host explicitly.
//! IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo)
//! are judged by the IPv4 address they carry, so `::ffff:127.0.0.1` and `64:ff9b::a9fe:a9fe`
//! are what they point at. The ranges follow the IANA special-purpose address registries
//! (RFC 6890 and its updates). An address of this host's own interfaces, or one Warden's
//! listeners are bound to, is [`AddressClass::ThisHost`] whatever its range
//! ([`super::this_host`]): through it an agent would reach Warden itself. A global address in
//! a network the operator declares internal is [`AddressClass::DeclaredInternal`]
//! ([`super::internal_networks`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The kind of an address, as the egress guard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// Globally reachable unicast: the only class egress reaches without an explicit policy.
    Global,
    /// `0.0.0.0/8` ("this network"), `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// A cloud platform's own endpoint at an address that is otherwise global, reachable
    /// from every virtual machine: Azure's WireServer `168.63.129.16` (DNS, health probes,
    /// VM agent settings).
    CloudPlatform,
    /// `100.64.0.0/10`: carrier-grade NAT, shared address space.
    SharedCgnat,
    /// `fc00::/7`, and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// An address of this host (an interface's, or one a listener of Warden's is bound to)
    /// other than loopback: it reaches Warden's own listeners and its host's services.
    ThisHost,
    /// A global address in a network the operator declares internal
    /// (`egress.internal_networks`): the public address a NAT maps to this host, the
    /// organisation's own public ranges.
    DeclaredInternal,
    /// Anything else not globally reachable: `240.0.0.0/4`, `192.0.0.0/24`, `192.88.99.0/24`,
    /// `100::/64`, the rest of `2001::/23`, local-use NAT64 `64:ff9b:1::/48`, and IPv6 outside
    /// `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// The class's name in records, errors and the policy guide (`private`, `link_local`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Global => "global",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link_local",
            AddressClass::CloudPlatform => "cloud_platform",
            AddressClass::SharedCgnat => "shared_cgnat",
            AddressClass::UniqueLocal => "unique_local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
            AddressClass::ThisHost => "this_host",
            AddressClass::DeclaredInternal => "declared_internal",
        }
    }

    /// Whether egress reaches this class without a policy that allows internal addresses.
    pub fn is_global(self) -> bool {
        self == AddressClass::Global
    }
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of `ip`; an IPv6 address that carries an IPv4 address has that address's class.
pub fn classify(ip: IpAddr) -> AddressClass {
    let local = Local {
        this_host: &super::this_host::addresses(),
        internal: &super::internal_networks::networks(),
    };
    classify_on(ip, &local)
}

/// What is local to this deployment beyond the special-purpose ranges.
struct Local<'a> {
    /// This host's own addresses.
    this_host: &'a [IpAddr],
    /// The networks the operator declares internal.
    internal: &'a [IpNet],
}

/// The class of `ip` where `local` is what is local.
fn classify_on(ip: IpAddr, local: &Local<'_>) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4, local),
        IpAddr::V6(v6) => classify_v6(v6, local),
    }
}

/// `ThisHost` for an address of this host, unless it is loopback (which says as much) or
/// unspecified; `DeclaredInternal` for a global address in a declared internal network; `class`
/// otherwise.
fn own(ip: IpAddr, class: AddressClass, local: &Local<'_>) -> AddressClass {
    let loopback = matches!(class, AddressClass::Loopback | AddressClass::Unspecified);
    if !loopback && local.this_host.contains(&ip) {
        AddressClass::ThisHost
    } else if class.is_global() && super::internal_networks::holds(local.internal, ip) {
        AddressClass::DeclaredInternal
    } else {
        class
    }
}

/// Whether `addr` lies in `prefix/len`.
fn in_v4(addr: Ipv4Addr, prefix: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(addr) & mask == u32::from(Ipv4Addr::from(prefix)) & mask
}

/// IPv4 special-purpose ranges, most specific first where they nest.
const V4_RANGES: &[([u8; 4], u32, AddressClass)] = &[
    ([168, 63, 129, 16], 32, AddressClass::CloudPlatform),
    ([0, 0, 0, 0], 8, AddressClass::Unspecified),
    ([10, 0, 0, 0], 8, AddressClass::Private),
    ([100, 64, 0, 0], 10, AddressClass::SharedCgnat),
    ([127, 0, 0, 0], 8, AddressClass::Loopback),
    ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
    ([172, 16, 0, 0], 12, AddressClass::Private),
    ([192, 0, 0, 0], 24, AddressClass::Reserved),
    ([192, 0, 2, 0], 24, AddressClass::Documentation),
    ([192, 88, 99, 0], 24, AddressClass::Reserved),
    ([192, 168, 0, 0], 16, AddressClass::Private),
    ([198, 18, 0, 0], 15, AddressClass::Benchmarking),
    ([198, 51, 100, 0], 24, AddressClass::Documentation),
    ([203, 0, 113, 0], 24, AddressClass::Documentation),
    ([224, 0, 0, 0], 4, AddressClass::Multicast),
    ([255, 255, 255, 255], 32, AddressClass::Broadcast),
    ([240, 0, 0, 0], 4, AddressClass::Reserved),
];

fn classify_v4(addr: Ipv4Addr, local: &Local<'_>) -> AddressClass {
    let class = V4_RANGES
        .iter()
        .find(|(prefix, len, _)| in_v4(addr, *prefix, *len))
        .map_or(AddressClass::Global, |(_, _, class)| *class);
    own(IpAddr::V4(addr), class, local)
}

/// Whether `addr` lies in `prefix/len`.
fn in_v6(addr: Ipv6Addr, prefix: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(addr) & mask == prefix & mask
}

/// The IPv4 address in bits `from..from + 32` of `addr`.
fn v4_at(addr: Ipv6Addr, from: u32) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(addr) >> (96 - from)) as u32)
}

/// IPv6 special-purpose ranges that carry no IPv4 address.
const V6_RANGES: &[(u128, u32, AddressClass)] = &[
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        AddressClass::Reserved,
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        AddressClass::Benchmarking,
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        AddressClass::Documentation,
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        23,
        AddressClass::Reserved,
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        AddressClass::Documentation,
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        AddressClass::Reserved,
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        AddressClass::UniqueLocal,
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        AddressClass::LinkLocal,
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        AddressClass::UniqueLocal,
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        AddressClass::Multicast,
    ),
];

/// Teredo, `2001::/32`: the server's IPv4 address in bits 32..64, the client's (each bit
/// inverted) in bits 96..128.
const TEREDO: u128 = 0x2001_0000_0000_0000_0000_0000_0000_0000;

fn classify_v6(addr: Ipv6Addr, local: &Local<'_>) -> AddressClass {
    let bits = u128::from(addr);
    if bits == 0 {
        return AddressClass::Unspecified;
    }
    if bits == 1 {
        return AddressClass::Loopback;
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and IPv4-mapped (::ffff:a.b.c.d).
    if in_v6(addr, 0, 96) || in_v6(addr, 0xffff_0000_0000, 96) {
        return classify_v4(v4_at(addr, 96), local);
    }
    // NAT64, well-known prefix: 64:ff9b::a.b.c.d.
    if in_v6(addr, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return classify_v4(v4_at(addr, 96), local);
    }
    // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d.
    if in_v6(addr, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return classify_v4(v4_at(addr, 16), local);
    }
    if in_v6(addr, TEREDO, 32) {
        let server = classify_v4(v4_at(addr, 32), local);
        let client = classify_v4(Ipv4Addr::from(!(bits as u32)), local);
        return if server.is_global() { client } else { server };
    }
    let class = if let Some((_, _, class)) = V6_RANGES
        .iter()
        .find(|(prefix, len, _)| in_v6(addr, *prefix, *len))
    {
        *class
    } else if in_v6(addr, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        // Global unicast is 2000::/3; the rest of the space is not allocated for it.
        AddressClass::Global
    } else {
        AddressClass::Reserved
    };
    own(IpAddr::V6(addr), class, local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_range_has_its_class() {
        use AddressClass::*;
        let cases: &[(&str, AddressClass)] = &[
            ("8.8.8.8", Global),
            ("151.101.0.223", Global),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Global),
            ("192.168.1.1", Private),
            ("169.254.169.254", LinkLocal),
            ("168.63.129.16", CloudPlatform),
            ("168.63.129.17", Global),
            ("::ffff:168.63.129.16", CloudPlatform),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("100.128.0.1", Global),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.20.0.1", Global),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.88.99.1", Reserved),
            ("2606:4700::1111", Global),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("fd00::1", UniqueLocal),
            ("fc00::1", UniqueLocal),
            ("fec0::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("100::1", Reserved),
            ("2001:10::1", Reserved),
            ("64:ff9b:1::a00:1", Reserved),
            ("4000::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Global),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Global),
            ("2002:7f00:1::", Loopback),
            ("2002:a00:1::1", Private),
            ("2002:808:808::1", Global),
            // Teredo: server 65.54.227.120, client 127.0.0.1 inverted.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback),
            // Teredo with a private server.
            ("2001:0:a00:1::1", Private),
            // Teredo with both global: the client 8.8.8.8 inverted is f7f7:f7f7.
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Global),
        ];
        assert_classes(cases, &[]);
    }

    /// Checks that each address of `cases` has its class on a host whose own addresses are
    /// `this_host`.
    fn assert_classes(cases: &[(&str, AddressClass)], this_host: &[IpAddr]) {
        assert_classes_on(
            cases,
            &Local {
                this_host,
                internal: &[],
            },
        );
    }

    fn assert_classes_on(cases: &[(&str, AddressClass)], local: &Local<'_>) {
        for (text, class) in cases {
            let ip: IpAddr = text.parse().expect(text);
            assert_eq!(classify_on(ip, local), *class, "{text}");
        }
    }

    #[test]
    fn a_global_address_in_a_declared_internal_network_is_internal_in_every_spelling() {
        use AddressClass::*;
        let internal: Vec<IpNet> = ["8.8.4.0/24", "2606:4700::/32", "10.0.0.0/8"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let this_host: Vec<IpAddr> = vec!["8.8.4.9".parse().unwrap()];
        let cases: &[(&str, AddressClass)] = &[
            ("8.8.4.4", DeclaredInternal),
            ("::ffff:8.8.4.4", DeclaredInternal),
            ("64:ff9b::808:404", DeclaredInternal),
            ("2002:808:404::1", DeclaredInternal),
            ("2606:4700::1111", DeclaredInternal),
            ("8.8.8.8", Global),
            ("2607:f8b0::1", Global),
            // A declared network names global addresses only: a special range keeps its
            // class, and this host's own addresses stay this_host.
            ("10.1.2.3", Private),
            ("8.8.4.9", ThisHost),
        ];
        assert_classes_on(
            cases,
            &Local {
                this_host: &this_host,
                internal: &internal,
            },
        );
        assert_eq!(DeclaredInternal.to_string(), "declared_internal");
        assert!(!DeclaredInternal.is_global());
    }

    #[test]
    fn this_hosts_own_addresses_are_this_host_in_every_spelling() {
        use AddressClass::*;
        let this_host: Vec<IpAddr> = ["8.8.4.4", "10.1.2.3", "2606:4700::1", "127.0.0.1", "::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let cases: &[(&str, AddressClass)] = &[
            ("8.8.4.4", ThisHost),
            ("::ffff:8.8.4.4", ThisHost),
            ("64:ff9b::808:404", ThisHost),
            ("2002:808:404::1", ThisHost),
            ("10.1.2.3", ThisHost),
            ("2606:4700::1", ThisHost),
            ("8.8.8.8", Global),
            ("10.1.2.4", Private),
            // Loopback says as much already.
            ("127.0.0.1", Loopback),
            ("::1", Loopback),
        ];
        assert_classes(cases, &this_host);
        assert_eq!(ThisHost.to_string(), "this_host");
        assert!(!ThisHost.is_global());
    }

    #[test]
    fn an_interface_address_of_this_machine_is_not_global() {
        super::super::this_host::refresh();
        for ip in super::super::this_host::addresses().iter() {
            assert!(!classify(*ip).is_global(), "{ip}");
        }
    }

    #[test]
    fn only_global_is_global() {
        assert!(AddressClass::Global.is_global());
        assert!(!AddressClass::LinkLocal.is_global());
        assert_eq!(AddressClass::SharedCgnat.to_string(), "shared_cgnat");
    }
}

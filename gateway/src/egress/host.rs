//! The destination host of egress, read as the operating system would read it.
//!
//! A host that is an address in disguise is an address: `2130706433`, `0177.0.0.1`,
//! `0x7f.1` and `127.1` are `127.0.0.1`, as `inet_aton(3)` reads them; percent-encoding,
//! full-width digits and dots, upper case and a trailing dot are undone first (UTS 46, as
//! URLs read host names). A host whose last label is numeric but is no valid address is
//! refused, not looked up. A name is kept in its ASCII (punycode) form: that is the
//! `Host::"<name>"` policies see, whatever the agent wrote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use percent_encoding::percent_decode_str;

/// Longest DNS name (RFC 1035), without the trailing dot.
const NAME_MAX: usize = 253;
/// Longest DNS label.
const LABEL_MAX: usize = 63;

/// An egress destination host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name: lower-case ASCII (punycode for international names), no trailing dot.
    Name(String),
    /// An address, however it was spelled.
    Address(IpAddr),
}

/// Why a host cannot be an egress destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is empty")]
    Empty,
    #[error("the host's percent-encoding is not UTF-8")]
    Encoding,
    #[error("the host is not a valid domain name ({0})")]
    Name(String),
    #[error("the host looks like an IPv4 address but is not one any resolver agrees on")]
    NumericNotAddress,
    #[error("the host is not a valid IPv6 address")]
    Ipv6,
    #[error("IPv6 zone identifiers are not accepted")]
    Zone,
}

impl Host {
    /// Reads `text`, the host of a request target (without the port; an IPv6 address in
    /// brackets).
    pub fn parse(text: &str) -> Result<Host, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::Ipv6)?;
            if inner.contains('%') {
                return Err(HostError::Zone);
            }
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Address(canonical(IpAddr::V6(ip))))
                .map_err(|_| HostError::Ipv6);
        }
        let decoded = percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| HostError::Encoding)?;
        // UTS 46: full-width forms, ideographic dots and upper case mapped; international
        // names to punycode.
        let ascii = idna::domain_to_ascii(&decoded).map_err(|e| HostError::Name(e.to_string()))?;
        let name = ascii.strip_suffix('.').unwrap_or(&ascii);
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if name.contains(':') {
            // An IPv6 address without brackets (`CONNECT ::1:443` cannot be split): refuse.
            return Err(HostError::Ipv6);
        }
        if ends_in_number(name) {
            return inet_aton(name)
                .map(|v4| Host::Address(IpAddr::V4(v4)))
                .ok_or(HostError::NumericNotAddress);
        }
        check_name(name)?;
        Ok(Host::Name(name.to_owned()))
    }

    /// The host as `Host::"<name>"` names it: the DNS name, or the address in its usual form.
    pub fn cedar_name(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::Address(ip) => ip.to_string(),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; any other as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the last label is a number (decimal, or `0x` hex): the URL standard's test of a
/// host that must be read as an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let lower = last.to_ascii_lowercase();
    lower
        .strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `inet_aton(3)`: one to four parts, each decimal, octal (leading `0`) or hex (`0x`); the
/// last part fills the bytes the others leave.
pub fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(number(part)?);
    }
    let (last, leading) = values.split_last()?;
    let mut address: u32 = 0;
    for (i, v) in leading.iter().enumerate() {
        if *v > 255 {
            return None;
        }
        address |= v << (24 - 8 * i);
    }
    let room = 32 - 8 * leading.len() as u32;
    if room < 32 && u64::from(*last) >= 1u64 << room {
        return None;
    }
    Some(Ipv4Addr::from(address | last))
}

/// One part of an `inet_aton` address.
fn number(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// A DNS name of letters, digits, `-` and `_`, in labels of 1 to 63 characters.
fn check_name(name: &str) -> Result<(), HostError> {
    if name.len() > NAME_MAX {
        return Err(HostError::Name(format!(
            "longer than {NAME_MAX} characters"
        )));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > LABEL_MAX {
            return Err(HostError::Name(format!(
                "a label is empty or longer than {LABEL_MAX} characters"
            )));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostError::Name(
                "only letters, digits, '-' and '_' may appear in a label".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::ip_guard::{AddressClass, classify};

    /// Spellings of addresses, what they are, and their class: the SSRF corpus.
    const CORPUS: &[(&str, &str, AddressClass)] = &[
        ("127.0.0.1", "127.0.0.1", AddressClass::Loopback),
        ("2130706433", "127.0.0.1", AddressClass::Loopback),
        ("0177.0.0.1", "127.0.0.1", AddressClass::Loopback),
        ("0177.0.0.01", "127.0.0.1", AddressClass::Loopback),
        ("0x7f.1", "127.0.0.1", AddressClass::Loopback),
        ("0x7F000001", "127.0.0.1", AddressClass::Loopback),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1", AddressClass::Loopback),
        ("127.1", "127.0.0.1", AddressClass::Loopback),
        ("127.0.1", "127.0.0.1", AddressClass::Loopback),
        ("127.000.000.001", "127.0.0.1", AddressClass::Loopback),
        ("0", "0.0.0.0", AddressClass::Unspecified),
        ("0.0.0.0", "0.0.0.0", AddressClass::Unspecified),
        ("0x0", "0.0.0.0", AddressClass::Unspecified),
        ("127.0.0.1.", "127.0.0.1", AddressClass::Loopback),
        ("%31%32%37.0.0.1", "127.0.0.1", AddressClass::Loopback),
        ("１２７.０.０.１", "127.0.0.1", AddressClass::Loopback),
        ("１２７。０。０。１", "127.0.0.1", AddressClass::Loopback),
        (
            "%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1",
            "127.0.0.1",
            AddressClass::Loopback,
        ),
        (
            "169.254.169.254",
            "169.254.169.254",
            AddressClass::LinkLocal,
        ),
        ("2852039166", "169.254.169.254", AddressClass::LinkLocal),
        ("0xa9fea9fe", "169.254.169.254", AddressClass::LinkLocal),
        (
            "0251.0376.0251.0376",
            "169.254.169.254",
            AddressClass::LinkLocal,
        ),
        ("169.254.43518", "169.254.169.254", AddressClass::LinkLocal),
        (
            "0xA9.0xFE.0xA9.0xFE",
            "169.254.169.254",
            AddressClass::LinkLocal,
        ),
        ("10.1", "10.0.0.1", AddressClass::Private),
        ("167772161", "10.0.0.1", AddressClass::Private),
        ("012.0.0.1", "10.0.0.1", AddressClass::Private),
        ("192.168.1", "192.168.0.1", AddressClass::Private),
        ("0xc0a80001", "192.168.0.1", AddressClass::Private),
        ("172.16.1", "172.16.0.1", AddressClass::Private),
        ("100.64.0.1", "100.64.0.1", AddressClass::SharedCgnat),
        ("198.18.0.1", "198.18.0.1", AddressClass::Benchmarking),
        (
            "255.255.255.255",
            "255.255.255.255",
            AddressClass::Broadcast,
        ),
        ("4294967295", "255.255.255.255", AddressClass::Broadcast),
        ("224.0.0.1", "224.0.0.1", AddressClass::Multicast),
        ("[::1]", "::1", AddressClass::Loopback),
        ("[0:0:0:0:0:0:0:1]", "::1", AddressClass::Loopback),
        ("[::]", "::", AddressClass::Unspecified),
        ("[::ffff:127.0.0.1]", "127.0.0.1", AddressClass::Loopback),
        ("[::ffff:7f00:1]", "127.0.0.1", AddressClass::Loopback),
        (
            "[::ffff:a9fe:a9fe]",
            "169.254.169.254",
            AddressClass::LinkLocal,
        ),
        ("[::127.0.0.1]", "::7f00:1", AddressClass::Loopback),
        (
            "[64:ff9b::127.0.0.1]",
            "64:ff9b::7f00:1",
            AddressClass::Loopback,
        ),
        (
            "[64:ff9b::a9fe:a9fe]",
            "64:ff9b::a9fe:a9fe",
            AddressClass::LinkLocal,
        ),
        (
            "[64:ff9b:1::a00:1]",
            "64:ff9b:1::a00:1",
            AddressClass::Reserved,
        ),
        ("[2002:7f00:1::1]", "2002:7f00:1::1", AddressClass::Loopback),
        (
            "[2002:a9fe:a9fe::]",
            "2002:a9fe:a9fe::",
            AddressClass::LinkLocal,
        ),
        (
            "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            AddressClass::Loopback,
        ),
        ("[fe80::1]", "fe80::1", AddressClass::LinkLocal),
        (
            "[fd00:ec2::254]",
            "fd00:ec2::254",
            AddressClass::UniqueLocal,
        ),
        ("[FF02::1]", "ff02::1", AddressClass::Multicast),
        ("8.8.8.8", "8.8.8.8", AddressClass::Global),
        ("134744072", "8.8.8.8", AddressClass::Global),
        ("0x8.0x8.0x8.0x8", "8.8.8.8", AddressClass::Global),
    ];

    #[test]
    fn every_spelling_of_an_address_is_that_address() {
        assert!(CORPUS.len() >= 40, "the corpus holds {}", CORPUS.len());
        for (spelling, address, class) in CORPUS {
            let host = Host::parse(spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
            let Host::Address(ip) = host else {
                panic!("{spelling} read as a name: {host:?}");
            };
            assert_eq!(ip.to_string(), *address, "{spelling}");
            assert_eq!(classify(ip), *class, "{spelling}");
        }
    }

    #[test]
    fn names_are_lower_case_ascii_without_the_trailing_dot() {
        for (spelling, name) in [
            ("PyPI.org", "pypi.org"),
            ("pypi.org.", "pypi.org"),
            ("ｐｙｐｉ．ｏｒｇ", "pypi.org"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("files_1.example.com", "files_1.example.com"),
            ("%70ypi.org", "pypi.org"),
            ("0x7f.example", "0x7f.example"),
            ("1.2.3.4.example", "1.2.3.4.example"),
        ] {
            assert_eq!(
                Host::parse(spelling),
                Ok(Host::Name(name.to_owned())),
                "{spelling}"
            );
        }
    }

    #[test]
    fn numbers_that_are_no_address_are_refused_not_looked_up() {
        for spelling in [
            "256.0.0.1",
            "1.2.3.4.5",
            "08.0.0.1",
            "0x",
            "4294967296",
            "1.256.1",
            "example.123",
        ] {
            assert!(
                matches!(
                    Host::parse(spelling),
                    Err(HostError::NumericNotAddress) | Err(HostError::Name(_))
                ),
                "{spelling}: {:?}",
                Host::parse(spelling)
            );
        }
    }

    #[test]
    fn malformed_hosts_are_refused_with_a_reason() {
        assert_eq!(Host::parse(""), Err(HostError::Empty));
        assert_eq!(Host::parse("."), Err(HostError::Empty));
        assert_eq!(Host::parse("[fe80::1%25eth0]"), Err(HostError::Zone));
        assert_eq!(Host::parse("[::1"), Err(HostError::Ipv6));
        assert_eq!(Host::parse("%ff.example"), Err(HostError::Encoding));
        assert!(matches!(
            Host::parse("a b.example"),
            Err(HostError::Name(_))
        ));
        assert!(matches!(
            Host::parse(&format!("{}.example", "a".repeat(64))),
            Err(HostError::Name(_))
        ));
    }

    #[test]
    fn cedar_names_are_canonical() {
        assert_eq!(Host::parse("0x7f.1").unwrap().cedar_name(), "127.0.0.1");
        assert_eq!(Host::parse("PyPI.org.").unwrap().cedar_name(), "pypi.org");
    }
}

//! The identity a verified client certificate names: first DNS SAN, else first URI SAN
//! (e.g. a SPIFFE id), else the subject's common name. Whichever it is names no one when it
//! holds a control, bidirectional or invisible character or whitespace at either end (records
//! and SIEMs would show it as another name); the next kind of name is not tried instead.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// The identity named by `cert`, or `None` when it names none Warden can read.
pub(crate) fn client_identity(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    if let Some(dns) = cert.valid_dns_names().next() {
        return readable(dns);
    }
    // A URI SAN is any UTF-8 webpki can decode: controls and bidirectional or invisible
    // characters included.
    if let Some(uri) = cert.valid_uri_names().next() {
        return readable(uri);
    }
    common_name(cert.subject()).and_then(readable)
}

/// `name` as an identity, unless it would not read as it is.
fn readable(name: &str) -> Option<Arc<str>> {
    crate::protocol::unreadable_identifier(name)
        .is_none()
        .then(|| Arc::from(name))
}

/// DER tag of an OBJECT IDENTIFIER.
const OID: u8 = 0x06;
/// DER encoding of id-at-commonName (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The first common name in an X.501 `Name` (its contents: a sequence of RDN sets).
fn common_name(mut rdns: &[u8]) -> Option<&str> {
    while !rdns.is_empty() {
        let (_set, mut attributes, rest) = tlv(rdns)?;
        rdns = rest;
        while !attributes.is_empty() {
            let (_seq, attribute, rest) = tlv(attributes)?;
            attributes = rest;
            let (tag, oid, value) = tlv(attribute)?;
            if tag != OID || oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            // UTF8String, PrintableString, IA5String: all readable as UTF-8.
            if matches!(tag, 0x0c | 0x13 | 0x16) {
                return std::str::from_utf8(text).ok();
            }
        }
    }
    None
}

/// Splits one DER element off `input`: (tag, contents, rest). `None` if malformed.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || input.len() < octets {
            return None;
        }
        let (len_bytes, rest) = input.split_at(octets);
        input = rest;
        len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if input.len() < len {
        return None;
    }
    let (contents, rest) = input.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::test_pki::TestCa;

    #[test]
    fn identity_is_first_dns_san() {
        let ca = TestCa::new("ids");
        let leaf = ca.client_cert(&["agent-7.fleet.example", "other.example"], None);
        assert_eq!(
            client_identity(&leaf.der).as_deref(),
            Some("agent-7.fleet.example")
        );
    }

    #[test]
    fn identity_falls_back_to_uri_san() {
        let ca = TestCa::new("ids");
        let leaf = ca.client_cert(&["spiffe://fleet.example/agent/7"], None);
        assert_eq!(
            client_identity(&leaf.der).as_deref(),
            Some("spiffe://fleet.example/agent/7")
        );
    }

    #[test]
    fn identity_falls_back_to_common_name_without_san() {
        let ca = TestCa::new("ids");
        let leaf = ca.client_cert(&[], Some("agent-cn-9"));
        assert_eq!(client_identity(&leaf.der).as_deref(), Some("agent-cn-9"));
    }

    #[test]
    fn a_common_name_that_does_not_read_as_it_is_names_no_one() {
        let ca = TestCa::new("ids");
        for cn in [
            "agent-cn-9\u{202e}",
            "agent\u{200b}-cn-9",
            "agent\u{9b}2J",
            "agent-cn-9 ",
        ] {
            let leaf = ca.client_cert(&[], Some(cn));
            assert_eq!(client_identity(&leaf.der), None, "{cn:?}");
        }
    }

    #[test]
    fn a_uri_san_that_does_not_read_as_it_is_names_no_one() {
        let ca = TestCa::new("ids");
        // ASCII controls and edge whitespace, through rcgen's IA5String.
        for uri in [
            "spiffe://fleet.example/agent/7\u{1b}[2K",
            "spiffe://fleet.example/agent/7\u{7f}",
            "spiffe://fleet.example/agent/7\r\nspiffe://fleet.example/agent/8",
            "spiffe://fleet.example/agent/7 ",
        ] {
            let leaf = ca.client_cert(&[uri], Some("agent-cn-9"));
            assert_eq!(client_identity(&leaf.der), None, "{uri:?}");
        }
        // Bidirectional and invisible characters, which an IA5String cannot hold but webpki
        // reads from the SAN's bytes as UTF-8.
        for uri in [
            "spiffe://fleet.example/agent/7\u{202e}8",
            "spiffe://fleet.example/agent\u{200b}/7",
            "spiffe://fleet.example/agent/7\u{2066}",
        ] {
            let leaf = ca.client_cert_with_raw_uri(uri.as_bytes());
            assert_eq!(client_identity(&leaf.der), None, "{uri:?}");
        }
        // The same route, readable: the identity (so the refusals above are the check's).
        let leaf = ca.client_cert_with_raw_uri("spiffe://fleet.example/agent/7".as_bytes());
        assert_eq!(
            client_identity(&leaf.der).as_deref(),
            Some("spiffe://fleet.example/agent/7")
        );
    }

    #[test]
    fn malformed_name_yields_no_common_name() {
        // A SET whose declared length runs past the end of the input.
        assert_eq!(common_name(&[0x31, 0x10, 0x30, 0x03]), None);
        // Long-form length with more octets than present.
        assert_eq!(tlv(&[0x30, 0x84, 0x01]), None);
    }
}

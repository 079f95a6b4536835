//! Resource URIs as pinning reads them: normalised to one spelling (RFC 3986 §6.2.2, nothing
//! scheme-specific), masked where they may carry a credential (userinfo, query and fragment
//! values: a presigned URL's signature), and matched against resource templates (RFC 6570
//! level 1).

use std::borrow::Cow;

use sha2::{Digest as _, Sha256};

/// What stands for a userinfo or a query or fragment value in a URI Warden shows or records.
pub const MASK: &str = "***";

/// Hex digits of the full URI's SHA-256 kept in the pin key of a masked URI.
const KEY_DIGEST_HEX: usize = 32;

/// `uri` in the one spelling RFC 3986 §6.2.2 says is equivalent: scheme and host in lower
/// case, percent-encodings with upper-case hex digits and those of unreserved characters
/// decoded, dot segments of the path removed. Nothing else changes (no default port, no
/// trailing slash, no scheme-specific rule); a URI without a valid scheme has its
/// percent-encodings normalised only.
pub fn normalised(uri: &str) -> String {
    let parts = Parts::of(uri);
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = parts.scheme {
        out.push_str(&scheme.to_ascii_lowercase());
        out.push(':');
    }
    if let Some(authority) = parts.authority {
        out.push_str("//");
        let (userinfo, host, port) = split_authority(authority);
        if let Some(userinfo) = userinfo {
            out.push_str(&percent_normalised(userinfo));
            out.push('@');
        }
        out.push_str(&lower_outside_escapes(&percent_normalised(host)));
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
    }
    out.push_str(&remove_dot_segments(&percent_normalised(parts.path)));
    if let Some(query) = parts.query {
        out.push('?');
        out.push_str(&percent_normalised(query));
    }
    if let Some(fragment) = parts.fragment {
        out.push('#');
        out.push_str(&percent_normalised(fragment));
    }
    out
}

/// `uri` as Warden shows and records it: its userinfo replaced with [`MASK`], and each value
/// of its query and fragment (what follows `=` in a `&`-separated part, or the whole part
/// when it has no `=`): scheme, host, port, path and the parameters' names stay.
pub fn masked(uri: &str) -> Cow<'_, str> {
    let parts = Parts::of(uri);
    let userinfo = parts.authority.and_then(|a| split_authority(a).0);
    if userinfo.is_none() && parts.query.is_none() && parts.fragment.is_none() {
        return Cow::Borrowed(uri);
    }
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = parts.scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = parts.authority {
        out.push_str("//");
        let (userinfo, host, port) = split_authority(authority);
        if userinfo.is_some() {
            out.push_str(MASK);
            out.push('@');
        }
        out.push_str(host);
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
    }
    out.push_str(parts.path);
    if let Some(query) = parts.query {
        out.push('?');
        out.push_str(&values_masked(query));
    }
    if let Some(fragment) = parts.fragment {
        out.push('#');
        out.push_str(&values_masked(fragment));
    }
    Cow::Owned(out)
}

/// The key a resource is pinned under: its [`normalised`] URI, or, when masking changes it,
/// the masked URI followed by ` (uri sha256 <hex>)`, the first 32 hex digits of the SHA-256
/// of the full normalised URI: two URIs that differ in a masked value are two pins, and no
/// credential is kept in the key.
pub fn pin_key(uri: &str) -> String {
    let normal = normalised(uri);
    match masked(&normal) {
        Cow::Borrowed(_) => normal,
        Cow::Owned(masked) => {
            let digest = hex::encode(Sha256::digest(normal.as_bytes()));
            format!("{masked} (uri sha256 {})", &digest[..KEY_DIGEST_HEX])
        }
    }
}

/// A resource template read for matching: literal text and simple `{var}` expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literals (normalised as a URI's parts are) around the expressions: one more than the
    /// expressions.
    literals: Vec<String>,
}

/// What stands for an expression while a template is normalised (a private-use character,
/// which no normalisation changes).
const HOLE: char = '\u{E000}';

impl Template {
    /// `template` if Warden matches URIs against it: every expression is a simple `{var}`
    /// (RFC 6570 level 1: one variable name of letters, digits, `_`, `.` or percent-encodings,
    /// no operator, no modifier, no list). A template with any other expression matches
    /// nothing: `None`.
    pub fn parse(template: &str) -> Option<Template> {
        if template.contains(HOLE) {
            return None;
        }
        let mut shaped = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return None;
            }
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            let simple = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'%'));
            if !simple {
                return None;
            }
            shaped.push_str(&rest[..open]);
            shaped.push(HOLE);
            rest = &rest[close + 1..];
        }
        shaped.push_str(rest);
        let literals = normalised(&shaped).split(HOLE).map(str::to_owned).collect();
        Some(Template { literals })
    }

    /// Whether the [`normalised`] URI `uri` is an expansion of the template: its literals in
    /// order, each variable standing for one or more characters other than `/`, `?` and `#`
    /// (a simple expansion percent-encodes those; it never spans two path segments).
    pub fn matches(&self, uri: &str) -> bool {
        let bytes = uri.as_bytes();
        let n = bytes.len();
        // The positions of `uri` the template can have reached: a set walked literal by
        // literal, variable by variable (linear in the URI per step, whatever the template).
        let mut at = vec![false; n + 1];
        at[0] = true;
        for (i, literal) in self.literals.iter().enumerate() {
            if i > 0 {
                let mut next = vec![false; n + 1];
                let mut open = false;
                for q in 0..=n {
                    if q > 0 && open {
                        next[q] = true;
                    }
                    if q == n {
                        break;
                    }
                    if matches!(bytes[q], b'/' | b'?' | b'#') {
                        open = false;
                    } else if at[q] {
                        open = true;
                    }
                }
                at = next;
            }
            let mut next = vec![false; n + 1];
            for p in (0..=n).filter(|p| at[*p]) {
                if bytes[p..].starts_with(literal.as_bytes()) {
                    next[p + literal.len()] = true;
                }
            }
            at = next;
        }
        at[n]
    }
}

/// A URI split as RFC 3986 Appendix B reads any URI reference.
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn of(uri: &'a str) -> Parts<'a> {
        let (rest, fragment) = match uri.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (uri, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once(':') {
            Some((scheme, after)) if is_scheme(scheme) => (Some(scheme), after),
            _ => (None, rest),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                (Some(&after[..end]), &after[end..])
            }
            None => (None, rest),
        };
        Parts {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

/// Whether `text` is a scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An authority's userinfo (before its last `@`), host and port (after the host's last `:`
/// when only digits follow; an IP literal's `:` are inside its brackets).
fn split_authority(authority: &str) -> (Option<&str>, &str, Option<&str>) {
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, authority),
    };
    let port_at = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'))
        .filter(|&i| host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()));
    match port_at {
        Some(i) => (userinfo, &host_port[..i], Some(&host_port[i + 1..])),
        None => (userinfo, host_port, None),
    }
}

/// `text` with every percent-encoding of an unreserved character decoded and the others'
/// hex digits in upper case; a `%` not followed by two hex digits stays as it is.
fn percent_normalised(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                i += 3;
            }
            None => {
                // Copies the character at `i` whole (a `%`, or any UTF-8 sequence).
                let c = text[i..].chars().next().unwrap_or('%');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Cow::Owned(out)
}

/// `host` in lower case, but for the hex digits of its percent-encodings.
fn lower_outside_escapes(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    let mut escape = 0;
    for c in host.chars() {
        if escape > 0 {
            escape -= 1;
            out.push(c);
        } else if c == '%' {
            escape = 2;
            out.push(c);
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// RFC 3986 §5.2.4: `path` without its `.` and `..` segments.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    let dotted = |s: &str| s == "." || s == "..";
    if !path.split('/').any(dotted) {
        return Cow::Borrowed(path);
    }
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." { "/" } else { &input[3..] };
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        } else if dotted(input) {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    Cow::Owned(output)
}

/// A query or fragment with each `&`-separated part's value masked.
fn values_masked(text: &str) -> String {
    text.split('&')
        .map(|part| match part.split_once('=') {
            Some((name, _)) => format!("{name}={MASK}"),
            None if part.is_empty() => String::new(),
            None => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_spellings_normalise_to_one() {
        for (spelled, normal) in [
            ("NOTES://Today", "notes://today"),
            ("notes://today", "notes://today"),
            (
                "HTTPS://Example.COM:8443/A/b",
                "https://example.com:8443/A/b",
            ),
            ("file:///a/%7euser/%2e%2E/b", "file:///a/b"),
            ("file:///srv/./docs/../etc/passwd", "file:///srv/etc/passwd"),
            ("file:///a%2fb%3a", "file:///a%2Fb%3A"),
            ("notes://t%6Fday", "notes://today"),
            (
                "https://U%73er@EXAMPLE.com/x?Q=%41%2f#F",
                "https://User@example.com/x?Q=A%2F#F",
            ),
            ("https://[FE80::1]:80/", "https://[fe80::1]:80/"),
            ("urn:ISBN:0451450523", "urn:ISBN:0451450523"),
            ("no scheme/%7e/./x", "no scheme/~/x"),
            ("bad%zz%4", "bad%zz%4"),
        ] {
            assert_eq!(normalised(spelled), normal, "{spelled}");
        }
    }

    #[test]
    fn only_what_rfc_3986_calls_equivalent_is_normalised() {
        for distinct in [
            "https://example.com/a/",
            "https://example.com:443/a",
            "https://example.com",
            "file:///A",
            "notes://today?x=1",
            "https://user@example.com/a",
        ] {
            assert_eq!(normalised(distinct), distinct);
        }
        assert_ne!(normalised("file:///A"), normalised("file:///a"));
        assert_ne!(normalised("file:///a%2Fb"), normalised("file:///a/b"));
    }

    #[test]
    fn userinfo_query_and_fragment_values_are_masked() {
        assert_eq!(
            masked("https://bucket.s3.example/key?X-Amz-Signature=abc123&X-Amz-Expires=60"),
            "https://bucket.s3.example/key?X-Amz-Signature=***&X-Amz-Expires=***"
        );
        assert_eq!(
            masked("https://user:pa55@db.example:5432/x#access_token=t0k&x"),
            "https://***@db.example:5432/x#access_token=***&***"
        );
        assert_eq!(masked("notes://today"), "notes://today");
        assert!(matches!(masked("file:///a/b"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_masked_uri_keeps_a_digest_of_the_whole_in_its_pin_key() {
        let one = pin_key("https://s3.example/k?sig=one");
        let two = pin_key("https://s3.example/k?sig=two");
        assert_ne!(one, two);
        assert!(
            one.starts_with("https://s3.example/k?sig=*** (uri sha256 "),
            "{one}"
        );
        assert!(!one.contains("one"), "{one}");
        assert_eq!(one, pin_key("HTTPS://S3.example/k?sig=%6Fne"));
        assert_eq!(pin_key("NOTES://today"), "notes://today");
    }

    #[test]
    fn a_simple_variable_matches_one_run_within_a_segment() {
        let t = Template::parse("notes://{day}").unwrap();
        assert!(t.matches("notes://tomorrow"));
        assert!(!t.matches("notes://"));
        assert!(!t.matches("notes://a/b"));
        assert!(!t.matches("notes://a?b"));
        assert!(!t.matches("other://a"));
        let t = Template::parse("File:///srv/{dir}/{name}.txt").unwrap();
        assert!(t.matches("file:///srv/docs/a.b.txt"));
        assert!(t.matches("file:///srv/docs/a%2Fb.txt"));
        assert!(!t.matches("file:///srv/docs/../../etc/passwd.txt"));
        assert!(!t.matches("file:///srv/docs/x/y.txt"));
        assert!(!t.matches("file:///srv/docs/.txt"));
        let t = Template::parse("x:{a}{b}").unwrap();
        assert!(t.matches("x:ab"));
        assert!(!t.matches("x:a"));
    }

    #[test]
    fn a_template_beyond_level_one_matches_nothing() {
        for template in [
            "file:///{+path}",
            "file:///{/path}",
            "https://x/{?q}",
            "x:{a,b}",
            "x:{a*}",
            "x:{a:3}",
            "x:{}",
            "x:{a",
            "x:a}",
        ] {
            assert_eq!(Template::parse(template), None, "{template}");
        }
    }
}

//! Resource URIs as pinning reads them: normalised to one spelling (RFC 3986 §6.2.2, and the
//! scheme-based rules of §6.2.3 for `http`, `https`, `ws`, `wss` and `file`), masked where they
//! may carry a credential (userinfo, path segments the credential detectors recognise, query
//! and fragment values: a presigned URL's signature), and matched against resource templates
//! (RFC 6570 level 1).
//!
//! A URI of a scheme the WHATWG URL Standard calls special (`http`, `https`, `ws`, `wss`,
//! `ftp`) is split as browsers and Node split it, not as RFC 3986 does: `\` is `/`, and the
//! authority follows the scheme whatever slashes there are (`http:user@host`,
//! `http:\\user:pass@host` have a userinfo), so that what a server reads as a credential is
//! masked.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// What stands for a userinfo, a path segment holding a credential, or a query or fragment
/// value in a URI Warden shows or records.
pub const MASK: &str = "***";

/// Hex digits of the URI's keyed digest kept in the pin key of a masked URI.
const KEY_DIGEST_HEX: usize = 32;

/// What the pin URI key is derived for from the approvals factor key
/// (`approval::sealed::Sealer::derived_key`).
pub const KEY_PURPOSE: &str = "warden pin uri v1";

/// The key of the digest that tells two masked URIs apart in their pin keys: HMAC-SHA256, so
/// that a low-entropy masked value (`?pin=1234`) cannot be recovered from `warden tools list`
/// or a `tool_change` record by trying guesses. Derived from the approvals factor key, which
/// every replica on a shared store holds and the store does not; its id (a digest of the key)
/// is written in each pin key, so that pins keyed before the factor key was rotated are known.
pub struct UriKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for UriKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UriKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl UriKey {
    /// The key of these 32 bytes.
    pub fn new(key: Zeroizing<[u8; 32]>) -> UriKey {
        let id = hex::encode(&mac(&key, b"warden pin uri key id")[..4]);
        UriKey { key, id }
    }

    /// The key's id: 8 hex digits, the same on every replica with the same factor key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The suffix of a masked URI's pin key for the normalised URI `normal`.
    fn suffix(&self, normal: &str) -> String {
        let digest = hex::encode(mac(&self.key, normal.as_bytes()));
        format!(" (uri hmac {}:{})", self.id, &digest[..KEY_DIGEST_HEX])
    }
}

/// HMAC-SHA256 of `bytes` under `key`.
fn mac(key: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// `uri` in the one spelling RFC 3986 says is equivalent. §6.2.2: scheme and host in lower
/// case, percent-encodings with upper-case hex digits and those of unreserved characters
/// decoded, dot segments of the path removed. §6.2.3: an empty path is `/` in the special
/// schemes (`http`, `https`, `ws`, `wss`, `ftp`, which define it so; another scheme's
/// `x://a` and `x://a/` stay two URIs: [`empty_path_twin`]); `http`, `ws` without port 80,
/// `https`, `wss` without port 443, `file://localhost/` as `file:///` (RFC 8089), `\` as `/`
/// in a special scheme's authority and path (the WHATWG URL Standard). Nothing else changes
/// (no trailing slash added or removed elsewhere); a URI without a valid scheme has its
/// percent-encodings normalised only.
pub fn normalised(uri: &str) -> String {
    let parts = Parts::of(uri);
    let scheme = parts.scheme.map(str::to_ascii_lowercase);
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = &scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = parts.authority {
        out.push_str("//");
        let (userinfo, host, port) = split_authority(authority);
        if let Some(userinfo) = userinfo {
            out.push_str(&percent_normalised(userinfo));
            out.push('@');
        }
        let host = lower_outside_escapes(&percent_normalised(host));
        let default_port = match scheme.as_deref() {
            Some("http" | "ws") => Some("80"),
            Some("https" | "wss") => Some("443"),
            _ => None,
        };
        if !(scheme.as_deref() == Some("file") && host == "localhost" && userinfo.is_none()) {
            out.push_str(&host);
        }
        if let Some(port) = port.filter(|p| Some(*p) != default_port) {
            out.push(':');
            out.push_str(port);
        }
    }
    let path = match parts.special {
        true => Cow::Owned(parts.path.replace('\\', "/")),
        false => Cow::Borrowed(parts.path),
    };
    let path = remove_dot_segments(&percent_normalised(&path)).into_owned();
    if parts.special && path.is_empty() {
        out.push('/');
    }
    out.push_str(&path);
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

/// `uri` as Warden shows and records it: its userinfo replaced with [`MASK`], each path
/// segment in which the credential detectors find a secret
/// ([`crate::inspect::credential_spans`]: a Slack webhook's, a Telegram bot's, a Discord
/// webhook's token, any key or token format Warden knows), and each value of its query and
/// fragment (what follows `=` in a `&`-separated part, or the whole part when it has no `=`):
/// scheme, host, port, the other path segments and the parameters' names stay.
pub fn masked(uri: &str) -> Cow<'_, str> {
    masked_as(uri, false)
}

/// `uri` (a URI, or a resource template when `template`) masked as [`masked`] says; a
/// template's query or fragment value that is one expression (`q={q}`) stays, as it holds
/// nothing of the server's.
fn masked_as(uri: &str, template: bool) -> Cow<'_, str> {
    let parts = Parts::of(uri);
    let userinfo = parts.authority.and_then(|a| split_authority(a).0);
    let secret_segments = secret_segments(uri, &parts);
    if userinfo.is_none()
        && secret_segments.is_empty()
        && parts.query.is_none()
        && parts.fragment.is_none()
    {
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
    for (i, segment) in split_path(parts.path, parts.special).enumerate() {
        if i > 0 {
            out.push('/');
        }
        match secret_segments.contains(&i) {
            true => out.push_str(MASK),
            false => out.push_str(segment),
        }
    }
    if let Some(query) = parts.query {
        out.push('?');
        out.push_str(&values_masked(query, template));
    }
    if let Some(fragment) = parts.fragment {
        out.push('#');
        out.push_str(&values_masked(fragment, template));
    }
    if out == uri {
        return Cow::Borrowed(uri);
    }
    Cow::Owned(out)
}

/// The segments of `path` (split at `/`, and at `\` in a special scheme).
fn split_path(path: &str, special: bool) -> impl Iterator<Item = &str> {
    path.split(move |c| c == '/' || (special && c == '\\'))
}

/// The indexes of the segments of `parts`' path (in [`split_path`]'s order) in which a
/// credential detector finds a secret: read in the whole URI (a detector that knows a URL's
/// shape, a Slack webhook's, sees it whole) and in each segment percent-decoded.
fn secret_segments(uri: &str, parts: &Parts<'_>) -> Vec<usize> {
    if parts.path.is_empty() {
        return Vec::new();
    }
    let base = parts.path.as_ptr() as usize - uri.as_ptr() as usize;
    let spans = crate::inspect::credential_spans(uri.as_bytes());
    let mut secret = Vec::new();
    let mut at = base;
    for (i, segment) in split_path(parts.path, parts.special).enumerate() {
        let range = at..at + segment.len();
        at = range.end + 1;
        let in_whole = spans
            .iter()
            .any(|s| s.start < range.end && range.start < s.end && !segment.is_empty());
        let decoded = percent_decoded(segment);
        let alone =
            decoded != segment.as_bytes() && !crate::inspect::credential_spans(&decoded).is_empty();
        if in_whole || alone {
            secret.push(i);
        }
    }
    secret
}

/// The byte the percent-encoding at `i` of `text` stands for, if one is there.
fn escape_at(text: &str, i: usize) -> Option<u8> {
    (text.as_bytes()[i] == b'%')
        .then(|| text.get(i + 1..i + 3))
        .flatten()
        // Two hex digits exactly: `from_str_radix` alone also takes a sign (`%+A`).
        .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
}

/// `text` with every percent-encoding decoded.
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = escape_at(text, i);
        match byte {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// The other spelling of a normalised URI of a scheme that does not say whether an empty path
/// is `/` (`notes://today` and `notes://today/`): pinned apart, as the server may serve both,
/// but a read of one is held while the other is.
pub fn empty_path_twin(normal: &str) -> Option<String> {
    let parts = Parts::of(normal);
    if parts.special || parts.authority.is_none() || !matches!(parts.path, "" | "/") {
        return None;
    }
    let at = parts.path.as_ptr() as usize - normal.as_ptr() as usize;
    let twin_path = if parts.path.is_empty() { "/" } else { "" };
    let rest = &normal[at + parts.path.len()..];
    Some(format!("{}{twin_path}{rest}", &normal[..at]))
}

/// The key a resource is pinned under: its [`normalised`] URI, or, when masking changes it,
/// the masked URI followed by ` (uri hmac <key id>:<hex>)`, the first 32 hex digits of the
/// HMAC-SHA256 of the full normalised URI under `key`: two URIs that differ in a masked value
/// are two pins, no credential is kept in the key, and no masked value can be recovered from
/// it by trying guesses without the key.
pub fn pin_key(uri: &str, key: &UriKey) -> String {
    let normal = normalised(uri);
    match masked(&normal) {
        Cow::Borrowed(_) => normal,
        Cow::Owned(masked) => format!("{masked}{}", key.suffix(&normal)),
    }
}

/// The key a resource template is pinned under: the template itself, or, when masking changes
/// it (a literal query value, a userinfo, a credential in its path), the masked template
/// followed by its keyed digest as in [`pin_key`]. Such a template matches a URI by the URI's
/// masked form ([`Template::parse_key`]).
pub fn template_key(template: &str, key: &UriKey) -> String {
    match masked_as(template, true) {
        Cow::Borrowed(_) => template.to_owned(),
        Cow::Owned(masked) => format!("{masked}{}", key.suffix(template)),
    }
}

/// A resource template as a definition keeps it: masked as its key is ([`template_key`]).
pub fn template_masked(template: &str) -> Cow<'_, str> {
    masked_as(template, true)
}

/// A key made of `7` repeated, for tests.
#[cfg(test)]
pub fn test_key() -> UriKey {
    UriKey::new(Zeroizing::new([7; 32]))
}

/// What a stored resource pin key (without its `resource:` prefix) is, to bring it up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// A masked URI's key under the current [`UriKey`]: as it should be.
    Current,
    /// A masked URI's key of an unkeyed SHA-256 (before Warden keyed it): its digest is not
    /// made again, and it is removed.
    Stale,
    /// A masked URI's key holding an HMAC under another key (another replica's factor key,
    /// or one since rotated): kept, since this Warden cannot tell which, and another replica
    /// may still use it and its approval.
    OtherKey(String),
    /// The URI itself, normalised and masked by older rules: its key now.
    Raw(String),
}

impl StoredKey {
    /// What `stored` (a resource pin key without its prefix, or a template's when
    /// `template`) is under `key`.
    pub fn of(stored: &str, template: bool, key: &UriKey) -> StoredKey {
        if let Some((_, digest)) = stored.rsplit_once(" (uri hmac ")
            && let Some((id, _)) = digest.split_once(':')
        {
            return match id == key.id() {
                true => StoredKey::Current,
                false => StoredKey::OtherKey(id.to_owned()),
            };
        }
        if stored.contains(" (uri sha256 ") && stored.ends_with(')') {
            return StoredKey::Stale;
        }
        match template {
            true => StoredKey::Raw(template_key(stored, key)),
            false => StoredKey::Raw(pin_key(stored, key)),
        }
    }
}

/// A resource template read for matching: literal text and simple `{var}` expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literals (normalised as a URI's parts are) around the expressions: one more than the
    /// expressions.
    literals: Vec<String>,
    /// The template was masked ([`template_key`]): it matches a URI's masked form.
    masked: bool,
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
        Some(Template {
            literals,
            masked: false,
        })
    }

    /// The template pinned under `key` (a [`template_key`]): a masked one, with its digest,
    /// matches the masked form of a URI.
    pub fn parse_key(key: &str) -> Option<Template> {
        match key.rsplit_once(" (uri hmac ") {
            Some((masked, _)) => Template::parse(masked).map(|t| Template { masked: true, ..t }),
            None => Template::parse(key),
        }
    }

    /// Whether the [`normalised`] URI `uri` is an expansion of the template: its literals in
    /// order, each variable standing for one or more characters other than `/`, `?` and `#`
    /// (a simple expansion percent-encodes those; it never spans two path segments).
    pub fn matches(&self, uri: &str) -> bool {
        let masked_uri;
        let uri = match self.masked {
            true => {
                masked_uri = masked(uri);
                &*masked_uri
            }
            false => uri,
        };
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

/// A URI split as RFC 3986 Appendix B reads any URI reference, but for a special scheme
/// ([`SPECIAL`]), split as the WHATWG URL Standard does: any run of `/` and `\` after the
/// scheme starts the authority, which ends at the next `/`, `\`, `?` or `#`.
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
    /// The scheme is special: `\` separates path segments as `/` does.
    special: bool,
}

/// The schemes the WHATWG URL Standard calls special and always gives an authority (`file`,
/// the other special scheme, keeps RFC 3986's reading).
const SPECIAL: [&str; 5] = ["http", "https", "ws", "wss", "ftp"];

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
        let special = scheme.is_some_and(|s| SPECIAL.iter().any(|x| s.eq_ignore_ascii_case(x)));
        let (authority, path) = if special {
            let after = rest.trim_start_matches(['/', '\\']);
            let end = after.find(['/', '\\']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        } else {
            match rest.strip_prefix("//") {
                Some(after) => {
                    let end = after.find('/').unwrap_or(after.len());
                    (Some(&after[..end]), &after[end..])
                }
                None => (None, rest),
            }
        };
        Parts {
            scheme,
            authority,
            path,
            query,
            fragment,
            special,
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
        let byte = escape_at(text, i);
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

/// A query or fragment with each `&`-separated part's value masked; in a `template`, but for
/// a value that is one expression.
fn values_masked(text: &str, template: bool) -> String {
    let expression = |value: &str| {
        template
            && value.len() > 2
            && value.starts_with('{')
            && value.ends_with('}')
            && !value[1..value.len() - 1].contains(['{', '}'])
    };
    text.split('&')
        .map(|part| match part.split_once('=') {
            Some((_, value)) if expression(value) => part.to_owned(),
            Some((name, _)) => format!("{name}={MASK}"),
            None if part.is_empty() => String::new(),
            None if expression(part) => part.to_owned(),
            None => MASK.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    /// `%+A` is no percent-encoding (a sign is not a hex digit): it is not read as `%0A`, so
    /// it shares no pin with that URI.
    #[test]
    fn a_sign_after_a_percent_is_no_encoding() {
        assert_eq!(normalised("notes://a/x%+Ay"), "notes://a/x%+Ay");
        assert_ne!(normalised("notes://a/x%+Ay"), normalised("notes://a/x%0Ay"));
        assert_eq!(normalised("notes://a/x%7e"), "notes://a/x~");
    }

    use super::*;

    #[test]
    fn equivalent_spellings_normalise_to_one() {
        for (spelled, normal) in [
            ("NOTES://Today", "notes://today"),
            ("notes://today", "notes://today"),
            ("notes://today/", "notes://today/"),
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
            // RFC 3986 §6.2.3 and RFC 8089: the schemes' own equivalences.
            ("https://h:443/x", "https://h/x"),
            ("HTTP://h:80", "http://h/"),
            ("https://h?q", "https://h/?q"),
            ("wss://h:443/", "wss://h/"),
            ("file://localhost/x", "file:///x"),
            ("file://LocalHost/x", "file:///x"),
            // The WHATWG URL Standard's reading of a special scheme.
            ("http:\\\\h\\a\\..\\b", "http://h/b"),
            ("https:h/x", "https://h/x"),
            ("https:///h/x", "https://h/x"),
        ] {
            assert_eq!(normalised(spelled), normal, "{spelled}");
        }
    }

    #[test]
    fn a_normal_form_is_its_own_normal_form() {
        for spelled in [
            "HTTPS://H:443/a/../%7Eb?Q=%41",
            "http:\\\\h\\a\\..\\b",
            "https:h",
            "file://LOCALHOST/x/./y",
            "notes://t%6Fday",
            "x:%2e%2E/a",
            "no scheme/%7e/./x",
        ] {
            let once = normalised(spelled);
            assert_eq!(normalised(&once), once, "{spelled}");
        }
    }

    #[test]
    fn only_what_rfc_3986_calls_equivalent_is_normalised() {
        for distinct in [
            "https://example.com/a/",
            "https://example.com:8443/a",
            "http://example.com:443/",
            "https://example.com/",
            "notes://today/a/",
            "notes://today/a",
            "file://host/x",
            "file:///A",
            "notes://today?x=1",
            "notes://today",
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
        assert!(matches!(masked("notes://today?"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_userinfo_only_the_whatwg_reading_sees_is_masked() {
        for (spelled, shown) in [
            ("http:\\\\user:pa55@host/x", "http://***@host/x"),
            ("http:user:pa55@host/x", "http://***@host/x"),
            ("https:/user@host", "https://***@host"),
            ("HTTP:\\/user@host\\x", "HTTP://***@host/x"),
        ] {
            assert_eq!(masked(spelled), shown, "{spelled}");
            assert!(!masked(&normalised(spelled)).contains("pa55"), "{spelled}");
        }
        // Not a special scheme: RFC 3986 reads no authority there.
        assert_eq!(masked("notes:user@host"), "notes:user@host");
    }

    #[test]
    fn path_segments_holding_a_credential_are_masked() {
        let slack = "T0ABCDEFG/B0ABCDEFG/abcdefghijklmnopqrstuvwx";
        assert_eq!(
            masked(&format!("https://hooks.slack.com/services/{slack}")),
            "https://hooks.slack.com/***/***/***/***"
        );
        let bot = format!("123456789:AA{}", "hB3_x-Kq9".repeat(4)[..33].to_owned());
        assert_eq!(
            masked(&format!("https://api.telegram.org/bot{bot}/getMe")),
            "https://api.telegram.org/***/getMe"
        );
        let hook = "Zk9-_aB3".repeat(9)[..68].to_owned();
        assert_eq!(
            masked(&format!(
                "https://discord.com/api/webhooks/112233445566778899/{hook}"
            )),
            "https://discord.com/api/webhooks/112233445566778899/***"
        );
        // Any format the credential detectors know, percent-encoded or not.
        assert_eq!(
            masked("s3://keys/AKIAIOSFODNN7EXAMPLE/x"),
            "s3://keys/***/x"
        );
        assert_eq!(
            masked("s3://keys/%41KIAIOSFODNN7EXAMPL%45/x"),
            "s3://keys/***/x"
        );
        // Personal data is not a credential; ordinary paths stay.
        assert_eq!(
            masked("mail://box/alice@example.org/inbox"),
            "mail://box/alice@example.org/inbox"
        );
        assert!(matches!(
            masked("file:///srv/docs/report-2026.txt"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_templates_literal_values_are_masked_and_its_expressions_kept() {
        let key = test_key();
        assert_eq!(
            template_masked("https://api.example/find?key=s3cret&q={q}#{frag}"),
            "https://api.example/find?key=***&q={q}#{frag}"
        );
        assert_eq!(template_key("notes://{day}", &key), "notes://{day}");
        let pinned = template_key("https://api.example/find?key=s3cret&q={q}", &key);
        assert!(
            pinned.starts_with("https://api.example/find?key=***&q={q} (uri hmac "),
            "{pinned}"
        );
        assert!(!pinned.contains("s3cret"), "{pinned}");
        // The masked template matches a URI by its masked form.
        let t = Template::parse_key(&pinned).unwrap();
        assert!(t.matches(&normalised("https://api.example/find?key=s3cret&q=rust")));
        assert!(!t.matches(&normalised("https://api.example/other?key=s3cret&q=rust")));
    }

    #[test]
    fn a_masked_uri_keeps_a_digest_of_the_whole_in_its_pin_key() {
        let one = pin_key("https://s3.example/k?sig=one", &test_key());
        let two = pin_key("https://s3.example/k?sig=two", &test_key());
        assert_ne!(one, two);
        let prefix = format!(
            "https://s3.example/k?sig=*** (uri hmac {}:",
            test_key().id()
        );
        assert!(one.starts_with(&prefix), "{one}");
        // Keyed: another key gives another digest, and it is not the URI's plain SHA-256.
        let other = UriKey::new(Zeroizing::new([8; 32]));
        let under_other = pin_key("https://s3.example/k?sig=one", &other);
        assert_ne!(one[prefix.len()..], under_other[under_other.len() - 33..]);
        let plain = {
            use sha2::Digest as _;
            hex::encode(Sha256::digest(b"https://s3.example/k?sig=one"))
        };
        assert!(!one.contains(&plain[..32]), "{one}");
        assert!(!one.contains("one"), "{one}");
        assert_eq!(one, pin_key("HTTPS://S3.example/k?sig=%6Fne", &test_key()));
        assert_eq!(pin_key("NOTES://today", &test_key()), "notes://today");
        assert_eq!(
            empty_path_twin("notes://today"),
            Some("notes://today/".into())
        );
        assert_eq!(
            empty_path_twin("notes://today/?q"),
            Some("notes://today?q".into())
        );
        assert_eq!(empty_path_twin("notes://today/x"), None);
        assert_eq!(empty_path_twin("https://h/"), None);
    }

    #[test]
    fn a_simple_variable_matches_one_run_within_a_segment() {
        let t = Template::parse("notes://{day}").unwrap();
        assert!(t.matches(&normalised("notes://tomorrow")));
        assert!(!t.matches(&normalised("notes://")));
        assert!(!t.matches(&normalised("notes://a/b")));
        assert!(!t.matches(&normalised("notes://a?b")));
        assert!(!t.matches(&normalised("other://a")));
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
    fn stored_keys_are_current_stale_or_raw() {
        let key = test_key();
        let current = pin_key("https://s3.example/k?sig=one", &key);
        assert_eq!(StoredKey::of(&current, false, &key), StoredKey::Current);
        let rotated = pin_key(
            "https://s3.example/k?sig=one",
            &UriKey::new(Zeroizing::new([8; 32])),
        );
        assert!(matches!(
            StoredKey::of(&rotated, false, &key),
            StoredKey::OtherKey(id) if id != key.id()
        ));
        let unkeyed = "https://s3.example/k?sig=*** (uri sha256 0123456789abcdef0123456789abcdef)";
        assert_eq!(StoredKey::of(unkeyed, false, &key), StoredKey::Stale);
        assert_eq!(
            StoredKey::of("https://h:443", false, &key),
            StoredKey::Raw("https://h/".into())
        );
        assert_eq!(
            StoredKey::of("https://x/?k=v&q={q}", true, &key),
            StoredKey::Raw(template_key("https://x/?k=v&q={q}", &key))
        );
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

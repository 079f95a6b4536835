//! A REST request's path, read so that one operation cannot be reached under another's name.
//!
//! The path is split into segments and each is percent-decoded once. Refused: an empty segment
//! (`//`), a `.` or `..` segment (also when encoded, `%2e%2E`), an encoded `/` or a `\`
//! (which servers may treat as a separator), a `;` (path parameters, which Java servers strip
//! before routing), a bad or double encoding (`%zz`, `%252e`), bytes that are not UTF-8 and
//! control characters. One trailing `/` is dropped. What is judged is what goes upstream: the
//! operation's literals in the template's spelling, its parameters as policy judged them, in
//! this one spelling (`operations.rs`, `mod.rs`).

use std::borrow::Cow;
use std::fmt;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// `//` somewhere in the path.
    EmptySegment,
    /// A `.` or `..` segment, possibly percent-encoded.
    DotSegment,
    /// An encoded `/` (`%2F`) or a `\`, raw or encoded.
    Separator,
    /// A raw `;`.
    Semicolon,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `%` that decodes to another escape (`%252e`).
    DoubleEncoded,
    /// Decoded bytes that are not UTF-8.
    NotUtf8,
    /// A control character (NUL included).
    Control,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::EmptySegment => "it has an empty segment (//)",
            PathProblem::DotSegment => "it has a . or .. segment",
            PathProblem::Separator => "it has an encoded / or a \\ in a segment",
            PathProblem::Semicolon => "it has a ; (path parameters are not accepted)",
            PathProblem::BadEscape => "it has a % not followed by two hex digits",
            PathProblem::DoubleEncoded => "it is percent-encoded twice",
            PathProblem::NotUtf8 => "it decodes to bytes that are not UTF-8",
            PathProblem::Control => "it has a control character",
        })
    }
}

/// The raw and decoded segments of `path` (the request path after the route prefix), without
/// a trailing `/`; `[]` for `/` and the empty path.
pub fn segments(path: &str) -> Result<Vec<(&str, String)>, PathProblem> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|raw| decode(raw).map(|decoded| (raw, decoded)))
        .collect()
}

/// A path segment's characters that stay as they are (RFC 3986 `pchar` without `%`):
/// unreserved, sub-delimiters, `:` and `@`; every other byte is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// One decoded segment in the one spelling [`canonical`] gives it.
pub fn encode_segment(decoded: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::utf8_percent_encode(decoded, SEGMENT).into()
}

/// The path of decoded `segments` in one spelling, whatever escapes the agent chose:
/// `/%61dmin` and `/admin` are both `/admin`, `/x y` is `/x%20y`. Policy judges it, and it is
/// what goes upstream.
pub fn canonical(segments: &[(&str, String)]) -> String {
    let mut path = String::with_capacity(segments.iter().map(|(raw, _)| raw.len() + 1).sum());
    for (_, decoded) in segments {
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(decoded, SEGMENT));
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// One segment, decoded and checked.
fn decode(raw: &str) -> Result<String, PathProblem> {
    if raw.is_empty() {
        return Err(PathProblem::EmptySegment);
    }
    if raw.contains(';') {
        return Err(PathProblem::Semicolon);
    }
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        if hex.is_none() {
            return Err(PathProblem::BadEscape);
        }
    }
    let decoded: Cow<'_, [u8]> = percent_encoding::percent_decode(bytes).into();
    let decoded = String::from_utf8(decoded.into_owned()).map_err(|_| PathProblem::NotUtf8)?;
    if matches!(decoded.as_str(), "." | "..") {
        return Err(PathProblem::DotSegment);
    }
    if decoded.contains(['/', '\\']) {
        return Err(PathProblem::Separator);
    }
    if decoded.chars().any(char::is_control) {
        return Err(PathProblem::Control);
    }
    if raw.contains('%') && decoded.contains('%') {
        return Err(PathProblem::DoubleEncoded);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(path: &str) -> Result<Vec<String>, PathProblem> {
        segments(path).map(|s| s.into_iter().map(|(_, d)| d).collect())
    }

    #[test]
    fn segments_are_decoded_once_and_a_trailing_slash_dropped() {
        assert_eq!(
            decoded("/repos/acme/app/"),
            Ok(vec!["repos".into(), "acme".into(), "app".into()])
        );
        assert_eq!(
            decoded("/rep%6Fs/a%20b"),
            Ok(vec!["repos".into(), "a b".into()])
        );
        assert_eq!(decoded("/"), Ok(vec![]));
        assert_eq!(decoded(""), Ok(vec![]));
    }

    #[test]
    fn paths_that_could_reach_another_operation_are_refused() {
        for (path, problem) in [
            ("/repos/a/b/../../orgs/x", PathProblem::DotSegment),
            ("/repos/a/b/%2e%2E/x", PathProblem::DotSegment),
            ("/repos/./a", PathProblem::DotSegment),
            ("/repos//a", PathProblem::EmptySegment),
            ("/repos/a//", PathProblem::EmptySegment),
            ("/repos/a%2Fb/c", PathProblem::Separator),
            ("/repos/a%5cb/c", PathProblem::Separator),
            ("/repos/a\\b/c", PathProblem::Separator),
            ("/repos;x=1/a", PathProblem::Semicolon),
            ("/repos/%zz", PathProblem::BadEscape),
            ("/repos/%2", PathProblem::BadEscape),
            ("/repos/%252e%252e", PathProblem::DoubleEncoded),
            ("/repos/%ff", PathProblem::NotUtf8),
            ("/repos/a%00b", PathProblem::Control),
        ] {
            assert_eq!(decoded(path), Err(problem), "{path}");
        }
    }
}

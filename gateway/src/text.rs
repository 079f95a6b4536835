//! Text that came from a request, as Warden repeats it in messages, logs, audit records and
//! metric labels: always bounded, so no request can make any of them grow with its size.

use std::borrow::Cow;
use std::fmt;

/// Most characters of a request path repeated in a message.
pub const PATH_MAX: usize = 200;

/// Most characters of one free-text field (a reason, an error) an audit record or log line
/// keeps.
pub const FIELD_MAX: usize = 1024;

/// `s` cut to at most `max` characters, with `…` where it was cut; borrowed when it fits.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + 3);
            out.push_str(&s[..cut]);
            out.push('…');
            Cow::Owned(out)
        }
        None => Cow::Borrowed(s),
    }
}

/// A piece of request text kept for a message, cut to a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded(String);

impl Bounded {
    /// `s`, at most `max` characters.
    pub fn new(s: &str, max: usize) -> Bounded {
        Bounded(bounded(s, max).into_owned())
    }

    /// A request path, at most [`PATH_MAX`] characters.
    pub fn path(s: &str) -> Bounded {
        Bounded::new(s, PATH_MAX)
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Bounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(bounded("short", 10), "short");
        assert!(matches!(bounded("short", 10), Cow::Borrowed(_)));
        assert_eq!(bounded("ééééé", 3), "ééé…");
        let huge = "x".repeat(8 * 1024 * 1024);
        assert_eq!(Bounded::path(&huge).as_str().chars().count(), PATH_MAX + 1);
    }
}

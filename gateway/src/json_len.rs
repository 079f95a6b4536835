//! The length of a value written as JSON, counted without writing it anywhere: what a bound is
//! checked against before a value is held, and the exact size of a buffer it is then written to.

use std::io;

/// How many bytes `value` takes written as JSON (`serde_json::to_writer`'s compact form).
///
/// A value that cannot be written (a map with keys that are not strings, a `Serialize` that
/// fails) counts what was written before it failed; writing it for real reports the error.
pub fn json_len(value: &impl serde::Serialize) -> usize {
    let mut count = Count(0);
    // The counter never fails, so an error can only be the value's, which the caller meets
    // when it writes the value.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Counts what is written, and keeps none of it.
struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_values_length_is_that_of_its_compact_json() {
        let value = json!({"name": "a\"b\\c", "n": [1, 2.5, -3], "t": "\u{1F600}\u{7}", "z": null});
        assert_eq!(json_len(&value), value.to_string().len());
    }

    #[test]
    fn a_structs_length_is_that_of_its_json() {
        #[derive(serde::Serialize)]
        struct Login<'a> {
            role_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            secret_id: Option<&'a str>,
        }
        let login = Login {
            role_id: "r\u{e9}le",
            secret_id: None,
        };
        let written = serde_json::to_vec(&login).unwrap();
        assert_eq!(json_len(&login), written.len());
    }

    #[test]
    fn a_value_that_cannot_be_written_counts_what_was_written_before_it_failed() {
        let mut map = BTreeMap::new();
        map.insert(vec![1u8], 2u8);
        assert!(serde_json::to_vec(&map).is_err());
        // `{` is written before the key that is not a string is refused.
        assert_eq!(json_len(&map), 1);
    }
}

//! Numbers approvers may read rounded: Warden holds a JSON number that fits no 64-bit integer
//! as a 64-bit float, so `12345678901234567890123` reads `1.2345678901234568e22`. Wherever
//! approvers read arguments or a body (the console, notifications, `warden approvals show`),
//! such a number is named, so nobody approves a rounded value as the one the agent sent.

use serde_json::Value;

/// Most numbers [`note`] names.
const NAMED_MAX: usize = 10;

/// Past this magnitude not every integer is a 64-bit float (2^53): an integral number held as
/// a float from here on may have been rounded.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Whether `n` may not be the number that was sent: held as a float (it fits no 64-bit
/// integer), integral and at least 2^53.
fn may_be_rounded(n: &serde_json::Number) -> bool {
    n.as_f64()
        .is_some_and(|x| n.is_f64() && x.fract() == 0.0 && x.abs() >= EXACT_INTEGERS)
}

/// The JSON Pointers (RFC 6901) of the numbers in `value` that may have been rounded, in
/// document order, at most `max` of them, each cut to [`crate::text::QUOTE_MAX`] characters
/// (the keys are the agent's), and how many there are in all.
fn rounded_at(value: &Value, max: usize) -> (Vec<String>, usize) {
    fn walk(
        value: &Value,
        at: &mut String,
        found: &mut Vec<String>,
        total: &mut usize,
        max: usize,
    ) {
        match value {
            Value::Number(n) if may_be_rounded(n) => {
                *total += 1;
                if found.len() < max {
                    // The keys on the way are the agent's: each pointer is bounded.
                    found.push(if at.is_empty() {
                        "/".to_owned()
                    } else {
                        crate::text::bounded(at, crate::text::QUOTE_MAX).into_owned()
                    });
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    walk(item, at, found, total, max);
                    at.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(v, at, found, total, max);
                    at.truncate(len);
                }
            }
            _ => {}
        }
    }
    let (mut found, mut total) = (Vec::new(), 0);
    walk(value, &mut String::new(), &mut found, &mut total, max);
    (found, total)
}

/// What approvers are told when `value` holds numbers that may have been rounded: where they
/// are (at most ten JSON Pointers, and how many more) and why. `None` when it holds none.
pub fn note(value: &Value) -> Option<String> {
    let (at, total) = rounded_at(value, NAMED_MAX);
    if total == 0 {
        return None;
    }
    let more = if total > at.len() {
        format!(" and {} more", total - at.len())
    } else {
        String::new()
    };
    Some(format!(
        "{} {} may not be exactly as the agent sent {}: past 2^53 a number that fits no 64-bit \
         integer is held as a 64-bit float, with about 16 significant digits (at {}{more})",
        total,
        if total == 1 { "number" } else { "numbers" },
        if total == 1 { "it" } else { "them" },
        at.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_too_large_to_be_held_exactly_and_nothing_else() {
        let value: Value = serde_json::from_str(
            r#"{"amount": 12345678901234567890123, "n": [1, -99999999999999999999999.0],
                "a/b": 1e300, "ok": [18446744073709551615, -9223372036854775808, 0.1, 2.5e10]}"#,
        )
        .unwrap();
        assert_eq!(
            note(&value).unwrap(),
            "3 numbers may not be exactly as the agent sent them: past 2^53 a number that fits \
             no 64-bit integer is held as a 64-bit float, with about 16 significant digits (at \
             /amount, /n/1, /a~1b)"
        );
        let (_, total) = rounded_at(&value, 0);
        assert_eq!(total, 3);
        assert_eq!(
            note(&serde_json::json!({"ok": [u64::MAX, i64::MIN, 0.1, 1.5, "1e30"]})),
            None
        );
        assert!(note(&serde_json::json!(1e25)).unwrap().ends_with("(at /)"));
        // A pointer through keys the agent made long is cut, so the note stays short.
        let long = serde_json::json!({ "k".repeat(5_000): vec![1e25; 12] });
        let said = note(&long).unwrap();
        assert!(said.chars().count() < 1_200, "{}", said.len());
        assert!(said.contains(&format!("/{}…", "k".repeat(63))), "{said}");
        let many = Value::Array(vec![serde_json::json!(1e25); 12]);
        assert!(
            note(&many).unwrap().ends_with("/9 and 2 more)"),
            "{:?}",
            note(&many)
        );
    }
}

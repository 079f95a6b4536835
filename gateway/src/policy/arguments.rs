//! A tool call's arguments as Cedar sees them (`context.arguments`).
//!
//! The agent sends arguments as a JSON object. Policies see them only through a type: the
//! record a schema fragment declares for the tool (`warden policy schema --from-mcp`), against
//! which the policies were validated. Conversion follows that type and nothing else, so the
//! context Cedar judges always has the shape the validator checked:
//!
//! - a record takes the attributes it declares (keys that are not Cedar identifiers too:
//!   `context.arguments["dry-run"]`); other keys are left out; a required one missing, or
//!   `null`, does not fit; an optional one missing or `null` is absent (`has` is false);
//! - `String` a JSON string, `Long` an integer within 64 bits (`3.0` counts), `Bool` a
//!   boolean, `decimal` a number with at most four digits after the point (Cedar's
//!   `decimal`), `Set<T>` an array (order and repeats do not count, as in Cedar);
//! - `JsonText`: any value as its JSON text, compact, object keys sorted: the fallback for
//!   what Cedar cannot type (`anyOf`, free-form objects, `$ref` cycles).
//!
//! Arguments that do not fit the type (a wrong type, a missing required argument, a number
//! Cedar cannot hold exactly, more than [`MAX_DEPTH`] levels or [`MAX_VALUES`] values) are
//! an error: the request is then denied with the reason, never judged on a guess.

use std::fmt;
use std::sync::Arc;

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// Levels of nesting converted at most (arrays and objects).
pub(crate) const MAX_DEPTH: usize = 32;

/// Values converted at most for one call (every string, number, element and attribute).
pub(crate) const MAX_VALUES: usize = 10_000;

/// The Cedar type of an argument, as a schema fragment declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgType {
    String,
    Long,
    Bool,
    Decimal,
    /// Any JSON value, given as its JSON text (a Cedar `String`).
    JsonText,
    Set(Box<ArgType>),
    Record(Vec<Attribute>),
}

/// One attribute of a record type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub name: String,
    pub required: bool,
    pub ty: ArgType,
}

/// What policies may know of one tool's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ToolArguments {
    /// No schema fragment describes the tool's server: policies see an empty record.
    #[default]
    Hidden,
    /// The record type a schema fragment declares for the tool, and the fragment's file.
    Typed { ty: Arc<ArgType>, file: Arc<str> },
    /// The tool's server has a schema fragment (this file) that does not list the tool: a
    /// policy that reads its arguments cannot judge them.
    Unknown { file: Arc<str> },
}

/// Why arguments do not fit their type: where (`edits[0].oldText`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misfit {
    pub at: String,
    pub message: String,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.at, self.message)
        }
    }
}

/// `context.arguments` for a call with `arguments` (the JSON the agent sent) to a tool whose
/// arguments policies know as `known`; `Err` names what does not fit and where the type
/// comes from.
pub(crate) fn to_cedar(
    arguments: &Value,
    known: &ToolArguments,
) -> Result<RestrictedExpression, String> {
    match known {
        ToolArguments::Hidden => {
            RestrictedExpression::new_record(std::iter::empty()).map_err(|e| e.to_string())
        }
        ToolArguments::Unknown { file } => Err(format!(
            "the tool's arguments are unknown to policy: its server's schema fragment \
             ({file}) does not list it; regenerate it with `warden policy schema --from-mcp`"
        )),
        ToolArguments::Typed { ty, file } => {
            // Absent arguments are an empty object (MCP makes `arguments` optional).
            let empty = Value::Object(serde_json::Map::new());
            let arguments = if arguments.is_null() {
                &empty
            } else {
                arguments
            };
            let mut budget = MAX_VALUES;
            convert(arguments, ty, &mut String::new(), 0, &mut budget).map_err(|misfit| {
                format!("the tool's arguments do not fit their type in {file}: {misfit}")
            })
        }
    }
}

fn misfit(at: &str, message: impl Into<String>) -> Misfit {
    Misfit {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// What a JSON value is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn convert(
    value: &Value,
    ty: &ArgType,
    at: &mut String,
    depth: usize,
    budget: &mut usize,
) -> Result<RestrictedExpression, Misfit> {
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| misfit(at, format!("is past the {MAX_VALUES} values policy judges")))?;
    if depth > MAX_DEPTH {
        return Err(misfit(
            at,
            format!("is nested deeper than the {MAX_DEPTH} levels policy judges"),
        ));
    }
    let expected = |what: &str| misfit(at, format!("is {}, not {what}", kind(value)));
    Ok(match (ty, value) {
        (ArgType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
        (ArgType::String, _) => return Err(expected("a string")),
        (ArgType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
        (ArgType::Bool, _) => return Err(expected("a boolean")),
        (ArgType::Long, Value::Number(n)) => {
            RestrictedExpression::new_long(long(n).ok_or_else(|| {
                misfit(
                    at,
                    format!("is {}, not an integer Cedar holds (64 bits)", quoted(n)),
                )
            })?)
        }
        (ArgType::Long, _) => return Err(expected("an integer")),
        (ArgType::Decimal, Value::Number(n)) => {
            RestrictedExpression::new_decimal(decimal(n).ok_or_else(|| {
                misfit(
                    at,
                    format!(
                        "is {}, which Cedar's decimal cannot hold exactly (at most 4 digits \
                         after the point, below 922337203685477)",
                        quoted(n)
                    ),
                )
            })?)
        }
        (ArgType::Decimal, _) => return Err(expected("a number")),
        (ArgType::JsonText, value) => {
            let mut text = String::new();
            json_text(value, &mut text, depth, budget).map_err(|m| misfit(at, m))?;
            RestrictedExpression::new_string(text)
        }
        (ArgType::Set(element), Value::Array(items)) => {
            let mut elements = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                elements.push(convert(item, element, at, depth + 1, budget)?);
                at.truncate(len);
            }
            RestrictedExpression::new_set(elements)
        }
        (ArgType::Set(_), _) => return Err(expected("an array")),
        (ArgType::Record(attributes), Value::Object(map)) => {
            let mut fields = Vec::with_capacity(attributes.len());
            for attribute in attributes {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(&attribute.name);
                match map.get(&attribute.name) {
                    None | Some(Value::Null) if attribute.required => {
                        return Err(misfit(at, "is required and missing"));
                    }
                    None | Some(Value::Null) => {}
                    Some(v) => fields.push((
                        attribute.name.clone(),
                        convert(v, &attribute.ty, at, depth + 1, budget)?,
                    )),
                }
                at.truncate(len);
            }
            RestrictedExpression::new_record(fields).map_err(|e| misfit(at, e.to_string()))?
        }
        (ArgType::Record(_), _) => return Err(expected("an object")),
    })
}

/// A number the agent sent, as a message quotes it (bounded: `1e308` prints 309 digits).
fn quoted(n: &serde_json::Number) -> crate::text::Quoted {
    crate::text::Quoted::of(&n.to_string())
}

/// A JSON number as a Cedar long: an integer within 64 bits, or a float with no fraction
/// that is one.
fn long(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // 2^63 is the first float past i64::MAX; every float below it with no fraction fits.
    (f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f))
        .then_some(f as i64)
}

/// A JSON number as the text of a Cedar decimal (`"12.5"`), when Cedar holds it exactly:
/// at most four digits after the point, within Cedar's range (64-bit ten-thousandths).
fn decimal(n: &serde_json::Number) -> Option<String> {
    let text = if let Some(i) = n.as_i64() {
        format!("{i}.0")
    } else if let Some(u) = n.as_u64() {
        format!("{u}.0")
    } else {
        // The shortest text that reads back as this float: what the agent most likely wrote.
        let f = n.as_f64()?;
        if !f.is_finite() {
            return None;
        }
        let t = format!("{f}");
        if t.contains('.') { t } else { format!("{t}.0") }
    };
    let (whole, fraction) = text.split_once('.')?;
    let digits = whole.trim_start_matches('-');
    if fraction.len() > 4
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Ten-thousandths must fit in an i64.
    let scaled = format!("{whole}{fraction:0<4}");
    scaled.parse::<i64>().ok()?;
    Some(text)
}

/// Appends `value`'s JSON text to `out`: compact, object keys sorted (so equal values have
/// equal text whatever order the agent wrote them in).
fn json_text(
    value: &Value,
    out: &mut String,
    depth: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "is nested deeper than the {MAX_DEPTH} levels policy judges"
        ));
    }
    let quote = |s: &str, out: &mut String| {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
    };
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                *budget = budget
                    .checked_sub(1)
                    .ok_or_else(|| format!("is past the {MAX_VALUES} values policy judges"))?;
                if i > 0 {
                    out.push(',');
                }
                json_text(item, out, depth + 1, budget)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                *budget = budget
                    .checked_sub(1)
                    .ok_or_else(|| format!("is past the {MAX_VALUES} values policy judges"))?;
                if i > 0 {
                    out.push(',');
                }
                quote(key, out);
                out.push(':');
                json_text(&map[key], out, depth + 1, budget)?;
            }
            out.push('}');
        }
        Value::String(s) => quote(s, out),
        other => out.push_str(&other.to_string()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Context, Entities, EntityUid, EvalResult, Expression, Request};
    use serde_json::json;
    use std::str::FromStr;

    fn attr(name: &str, required: bool, ty: ArgType) -> Attribute {
        Attribute {
            name: name.into(),
            required,
            ty,
        }
    }

    fn typed(ty: ArgType) -> ToolArguments {
        ToolArguments::Typed {
            ty: Arc::new(ty),
            file: Arc::from("policies/mcp-fs.cedarschema"),
        }
    }

    /// Evaluates `expression` with `context.arguments` converted from `arguments`.
    fn eval(
        arguments: Value,
        known: &ToolArguments,
        expression: &str,
    ) -> Result<EvalResult, String> {
        let value = to_cedar(&arguments, known)?;
        let context =
            Context::from_pairs([("arguments".to_owned(), value)]).map_err(|e| e.to_string())?;
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let request = Request::new(
            uid("Agent::\"a\""),
            uid("Action::\"mcp:call_tool\""),
            uid("Tool::\"fs/write_file\""),
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let expression = Expression::from_str(expression).map_err(|e| e.to_string())?;
        cedar_policy::eval_expression(&request, &Entities::empty(), &expression)
            .map_err(|e| e.to_string())
    }

    fn holds(arguments: Value, known: &ToolArguments, expression: &str) -> bool {
        match eval(arguments, known, expression) {
            Ok(EvalResult::Bool(b)) => b,
            other => panic!("`{expression}`: {other:?}"),
        }
    }

    fn write_file() -> ToolArguments {
        typed(ArgType::Record(vec![
            attr("path", true, ArgType::String),
            attr("content", true, ArgType::String),
            attr("dry-run", false, ArgType::Bool),
            attr("mode", false, ArgType::Long),
            attr("ratio", false, ArgType::Decimal),
            attr("tags", false, ArgType::Set(Box::new(ArgType::String))),
            attr("options", false, ArgType::JsonText),
            attr(
                "edits",
                false,
                ArgType::Set(Box::new(ArgType::Record(vec![
                    attr("oldText", true, ArgType::String),
                    attr("newText", true, ArgType::String),
                ]))),
            ),
        ]))
    }

    #[test]
    fn typed_arguments_become_records_sets_and_values() {
        let args = json!({
            "path": "/srv/shared/a.txt",
            "content": "hi",
            "dry-run": true,
            "mode": 420.0,
            "ratio": 0.25,
            "tags": ["x", "y", "x"],
            "options": {"b": [1, null], "a": "z"},
            "edits": [{"oldText": "a", "newText": "b", "extra": 1}],
            "undeclared": 5
        });
        let t = write_file();
        assert!(holds(
            args.clone(),
            &t,
            r#"context.arguments.path like "/srv/shared/*""#
        ));
        assert!(holds(args.clone(), &t, r#"context.arguments["dry-run"]"#));
        assert!(holds(args.clone(), &t, "context.arguments.mode == 420"));
        assert!(holds(
            args.clone(),
            &t,
            r#"context.arguments.ratio.lessThan(decimal("0.3"))"#
        ));
        assert!(holds(
            args.clone(),
            &t,
            r#"context.arguments.tags == ["y", "x"]"#
        ));
        assert!(holds(
            args.clone(),
            &t,
            r#"context.arguments.options == "{\"a\":\"z\",\"b\":[1,null]}""#
        ));
        assert!(holds(
            args.clone(),
            &t,
            r#"context.arguments.edits.contains({oldText: "a", newText: "b"})"#
        ));
        assert!(holds(args, &t, "!(context.arguments has undeclared)"));
    }

    #[test]
    fn absent_and_null_optional_arguments_are_absent() {
        let t = write_file();
        let args = json!({"path": "/a", "content": "", "mode": null});
        assert!(holds(args.clone(), &t, "!(context.arguments has mode)"));
        assert!(holds(args, &t, r#"!(context.arguments has "dry-run")"#));
    }

    #[test]
    fn arguments_that_do_not_fit_their_type_are_refused_with_where_and_why() {
        let t = write_file();
        let cases = [
            (json!({"content": "x"}), "`path` is required and missing"),
            (
                json!({"path": null, "content": "x"}),
                "`path` is required and missing",
            ),
            (
                json!({"path": 7, "content": "x"}),
                "`path` is a number, not a string",
            ),
            (
                json!({"path": "/a", "content": "x", "mode": 1.5}),
                "`mode` is 1.5, not an integer",
            ),
            (
                json!({"path": "/a", "content": "x", "ratio": 0.00001}),
                "`ratio` is 0.00001",
            ),
            (
                json!({"path": "/a", "content": "x", "tags": "x"}),
                "`tags` is a string, not an array",
            ),
            (
                json!({"path": "/a", "content": "x", "edits": [{"oldText": "a"}]}),
                "`edits[0].newText` is required and missing",
            ),
            (json!(["/a"]), "is an array, not an object"),
        ];
        for (args, want) in cases {
            let err = to_cedar(&args, &t).expect_err(&args.to_string());
            assert!(err.contains(want), "{args}: {err}");
            assert!(err.contains("policies/mcp-fs.cedarschema"), "{err}");
        }
    }

    #[test]
    fn deep_or_huge_arguments_are_refused() {
        let t = typed(ArgType::Record(vec![attr("v", true, ArgType::JsonText)]));
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            deep = json!([deep]);
        }
        let err = to_cedar(&json!({"v": deep}), &t).expect_err("too deep");
        assert!(err.contains("nested deeper"), "{err}");
        let many: Vec<u32> = (0..MAX_VALUES as u32 + 1).collect();
        let err = to_cedar(&json!({"v": many}), &t).expect_err("too many");
        assert!(err.contains("values policy judges"), "{err}");
    }

    #[test]
    fn hidden_arguments_are_an_empty_record_and_unknown_ones_an_error() {
        let args = json!({"path": "/etc/passwd"});
        assert!(holds(
            args.clone(),
            &ToolArguments::Hidden,
            "context.arguments == {}"
        ));
        let unknown = ToolArguments::Unknown {
            file: Arc::from("policies/mcp-fs.cedarschema"),
        };
        let err = to_cedar(&args, &unknown).expect_err("unknown");
        assert!(err.contains("does not list it"), "{err}");
    }

    #[test]
    fn missing_arguments_are_an_empty_object() {
        let t = typed(ArgType::Record(vec![attr("path", false, ArgType::String)]));
        assert!(holds(Value::Null, &t, "!(context.arguments has path)"));
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(decimal(&n(json!(12))).as_deref(), Some("12.0"));
        assert_eq!(decimal(&n(json!(-0.5))).as_deref(), Some("-0.5"));
        assert_eq!(decimal(&n(json!(1.2345))).as_deref(), Some("1.2345"));
        assert_eq!(decimal(&n(json!(1.23456))), None);
        assert_eq!(decimal(&n(json!(1e300))), None);
        assert_eq!(decimal(&n(json!(u64::MAX))), None);
        assert_eq!(long(&n(json!(3.0))), Some(3));
        assert_eq!(long(&n(json!(9.3e18))), None);
        assert_eq!(long(&n(json!(u64::MAX))), None);
    }
}

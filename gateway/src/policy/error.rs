//! Policy load errors that point at a file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::Diagnostic;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text; never panics).
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What was wrong with the policy directory.
#[derive(Debug, thiserror::Error)]
pub enum PolicyErrorKind {
    /// A file or directory could not be read.
    #[error("cannot read: {0}; check the path and its permissions")]
    Io(#[source] std::io::Error),
    /// The policy directory is not there; `guess`: " (did you mean `PATH`?)" when a directory
    /// beside it has a close name, else empty.
    #[error(
        "no such directory{guess}: policy.dir (or --dir) names the directory of the policies and \
         their schema"
    )]
    NoDirectory { guess: String },
    /// The directory has no `schema.cedarschema`.
    #[error(
        "no schema: every policy directory needs `schema.cedarschema` (copy it from Warden's `policies/`)"
    )]
    MissingSchema,
    /// The schema does not parse or is inconsistent.
    #[error("invalid schema: {0}")]
    Schema(String),
    /// The schema parses but does not describe what Warden sends to Cedar.
    #[error(
        "schema does not match what Warden sends for `{action}`: {message}; keep Warden's entity types, actions and context attributes in the schema"
    )]
    SchemaMismatch {
        /// The Cedar action whose request or entities failed to validate.
        action: String,
        /// What did not match.
        message: String,
    },
    /// A policy file does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A policy does not validate against the schema.
    #[error("{0}")]
    Validation(String),
    /// A validator warning (an impossible or suspicious policy); not fatal.
    #[error("warning: {0}")]
    Warning(String),
    /// Two policies share one `@id`.
    #[error("duplicate policy id `{id}`: also defined at {first}; give each policy a unique @id")]
    DuplicateId {
        /// The repeated id.
        id: String,
        /// `file:line:column` of the first definition.
        first: String,
    },
    /// A template (with `?principal`/`?resource` slots) where a static policy was expected.
    #[error(
        "policy `{0}` is a template (it uses ?principal or ?resource); Warden loads static policies only"
    )]
    Template(String),
    /// The set is not the signed bundle `policy.bundle.public_keys` requires, or its files
    /// changed while it loaded.
    #[error("{0}")]
    Bundle(String),
    /// The directory holds more policy and schema-fragment files than a set may have.
    #[error(
        "more than {bound} policy and schema files (*.cedar, *.cedarschema) below this directory; \
         a policy set may have at most {bound}: keep only the set in it (tests/ and examples/ \
         are not counted)"
    )]
    TooManyFiles {
        /// The most a set may have.
        bound: usize,
    },
    /// An annotation Warden interprets has a value it cannot use.
    #[error("policy `{policy}`: {message}")]
    Annotation {
        /// The policy carrying the annotation.
        policy: String,
        /// What is wrong and how to write it.
        message: String,
    },
}

/// One problem in a policy directory, with where it is.
#[derive(Debug, thiserror::Error)]
pub struct PolicyError {
    /// The file at fault (as given: the policy directory joined with the relative path).
    pub file: PathBuf,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What was wrong.
    #[source]
    pub kind: PolicyErrorKind,
}

impl PolicyError {
    /// An error at `position` (if any) in `file`.
    pub fn new(file: &Path, position: Option<Position>, kind: PolicyErrorKind) -> PolicyError {
        PolicyError {
            file: file.to_path_buf(),
            position,
            kind,
        }
    }

    /// `file:line:column` (or just `file`) for messages that refer to this place.
    pub fn location(&self) -> String {
        match self.position {
            Some(p) => format!("{}:{p}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.kind)
    }
}

/// Every problem found while loading a policy directory; `Display` prints one per line.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Flattens a Cedar diagnostic (and its related diagnostics) into one entry per problem:
/// the byte offset of its first label, when it has one, and a one-line message.
pub(crate) fn flatten_diagnostic(diag: &dyn Diagnostic) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    push_diagnostic(diag, &mut out);
    out
}

fn push_diagnostic(diag: &dyn Diagnostic, out: &mut Vec<(Option<usize>, String)>) {
    let offset = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    out.push((offset, one_line(diag)));
    if let Some(related) = diag.related() {
        for r in related {
            push_diagnostic(r, out);
        }
    }
}

/// The diagnostic's message and help on one line.
pub(crate) fn one_line(diag: &dyn Diagnostic) -> String {
    let mut msg = diag.to_string();
    if let Some(help) = diag.help() {
        msg.push_str(" (help: ");
        msg.push_str(&help.to_string());
        msg.push(')');
    }
    msg.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_byte_offsets_to_line_and_character_column() {
        let text = "ab\n\u{e9}xyz\n";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 3),
            Position { line: 2, column: 1 }
        );
        // 'é' is two bytes: offset 5 is 'x', the second character of line 2.
        assert_eq!(
            Position::of_offset(text, 5),
            Position { line: 2, column: 2 }
        );
        // Offsets past the end or inside a character are clamped, not a panic.
        assert_eq!(
            Position::of_offset(text, 4),
            Position { line: 2, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 99),
            Position { line: 3, column: 1 }
        );
    }

    #[test]
    fn prints_one_error_per_line_with_file_line_and_column() {
        let errors = PolicyErrors(vec![
            PolicyError::new(
                Path::new("policies/a.cedar"),
                Some(Position {
                    line: 12,
                    column: 5,
                }),
                PolicyErrorKind::Syntax("unexpected token".into()),
            ),
            PolicyError::new(Path::new("policies"), None, PolicyErrorKind::MissingSchema),
        ]);
        let text = errors.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "policies/a.cedar:12:5: syntax error: unexpected token"
        );
        assert!(lines[1].starts_with("policies: no schema"));
    }
}

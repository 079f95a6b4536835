//! Templates: a secret path with principal attributes in it
//! (`secret/agents/{principal.owner}/github`), and a credential's wire form with the secret in
//! it (`Bearer {secret}`, `{secret.username}`).

use std::borrow::Cow;
use std::fmt;

use zeroize::Zeroizing;

use crate::action::Principal;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<V> {
    Text(String),
    Var(V),
}

/// A principal attribute a secret path may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalVar {
    Id,
    Owner,
    Fleet,
    Environment,
    /// Who vouched for the principal, as one segment ([`issuer_segment`]).
    Issuer,
}

impl PrincipalVar {
    const ALL: [(&'static str, PrincipalVar); 5] = [
        ("principal.id", PrincipalVar::Id),
        ("principal.owner", PrincipalVar::Owner),
        ("principal.fleet", PrincipalVar::Fleet),
        ("principal.environment", PrincipalVar::Environment),
        ("principal.issuer", PrincipalVar::Issuer),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }

    /// The attribute's value as it goes in the path: an attribute as it is (checked by the
    /// caller), the issuer encoded.
    fn of(self, principal: &Principal) -> Option<Cow<'_, str>> {
        match self {
            PrincipalVar::Id => Some(Cow::Borrowed(&principal.id)),
            PrincipalVar::Owner => principal.owner.as_deref().map(Cow::Borrowed),
            PrincipalVar::Fleet => principal.fleet.as_deref().map(Cow::Borrowed),
            PrincipalVar::Environment => principal.environment.as_deref().map(Cow::Borrowed),
            PrincipalVar::Issuer => Some(Cow::Owned(issuer_segment(&principal.issuer))),
        }
    }
}

/// An issuer (`https://login.example.com/realms/agents`, `warden`, `mtls`) as one path
/// segment that names it and no other: ASCII letters, digits, `-` and `.` as they are; every
/// other byte of its UTF-8 (`/`, `:`, `%`, `_`, `?`, a space...) as `_` and its two
/// upper-case hex digits (`/` is `_2F`, `_` is `_5F`), so that no issuer spells a separator
/// or a percent escape Vault's HTTP server would decode, and two issuers never share one.
/// `https://login.example.com/realms/agents` is `https_3A_2F_2Flogin.example.com_2Frealms_2Fagents`.
/// An issuer that is `.`, `..` or empty stays so and is refused where the path is resolved.
pub fn issuer_segment(issuer: &str) -> String {
    let mut out = String::with_capacity(issuer.len() + 8);
    for b in issuer.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.') {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xF)]));
        }
    }
    out
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{name}}}{guess} in {template:?} (known: {known})")]
    Unknown {
        name: String,
        template: String,
        known: String,
        /// " (did you mean `{x}`?)" when a known placeholder is close to `name`, else empty.
        guess: String,
    },
    #[error("unclosed {{ in {0:?}")]
    Unclosed(String),
    #[error(
        "{0:?} starts with a placeholder: the first segment (the mount) must be fixed, so that no principal attribute chooses it"
    )]
    AttributeMount(String),
}

/// Why a path template gives no path for a principal. Names the attribute, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "the secret path {template:?} needs {var}, which principal {principal:?} does not have"
    )]
    Missing {
        template: String,
        var: &'static str,
        principal: String,
    },
    #[error(
        "the secret path {template:?} cannot use {var} of principal {principal:?}: only letters, digits and . _ @ - are allowed in a path segment"
    )]
    Unsafe {
        template: String,
        var: &'static str,
        principal: String,
    },
}

/// " (did you mean `{x}`?)" when `{x}`, one of the placeholders `known` lists
/// (`{secret}, {secret.<field>}`), is close to `name`; a pattern (`<field>`) is no name.
fn placeholder_guess(name: &str, known: &str) -> String {
    let names = known
        .split(", ")
        .filter_map(|k| k.strip_prefix('{')?.strip_suffix('}'))
        .filter(|k| !k.contains('<'));
    crate::config::suggest::closest(name, names)
        .map(|k| format!(" (did you mean `{{{k}}}`?)"))
        .unwrap_or_default()
}

fn parse<V: Copy>(
    template: &str,
    var: impl Fn(&str) -> Option<V>,
    known: &str,
) -> Result<Vec<Piece<V>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| TemplateError::Unclosed(template.to_owned()))?;
        let name = &after[..close];
        let v = var(name).ok_or_else(|| TemplateError::Unknown {
            name: name.to_owned(),
            template: template.to_owned(),
            known: known.to_owned(),
            guess: placeholder_guess(name, known),
        })?;
        pieces.push(Piece::Var(v));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

/// A secret path, possibly naming principal attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    pieces: Vec<Piece<PrincipalVar>>,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<PathTemplate, TemplateError> {
        if text.starts_with('{') {
            return Err(TemplateError::AttributeMount(text.to_owned()));
        }
        let known = PrincipalVar::ALL
            .iter()
            .map(|(n, _)| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        let pieces = parse(
            text,
            |name| {
                PrincipalVar::ALL
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
            },
            &known,
        )?;
        Ok(PathTemplate {
            text: text.to_owned(),
            pieces,
        })
    }

    /// Whether the path depends on the principal.
    pub fn is_templated(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(_)))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path for `principal`. An attribute that could change the path's shape (a `/`,
    /// `..`, anything outside letters, digits and `. _ @ -`) is refused, never substituted;
    /// the issuer is encoded ([`issuer_segment`]).
    pub fn resolve(&self, principal: &Principal) -> Result<String, ResolveError> {
        let mut path = String::with_capacity(self.text.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => path.push_str(t),
                Piece::Var(v) => {
                    let value = v.of(principal).ok_or_else(|| ResolveError::Missing {
                        template: self.text.clone(),
                        var: v.name(),
                        principal: principal.id.to_string(),
                    })?;
                    if *v != PrincipalVar::Issuer && !is_safe_segment(&value) {
                        return Err(ResolveError::Unsafe {
                            template: self.text.clone(),
                            var: v.name(),
                            principal: principal.id.to_string(),
                        });
                    }
                    path.push_str(&value);
                }
            }
        }
        // Each segment as resolved: attributes side by side (`{principal.owner}{principal.fleet}`)
        // or beside a dot must not make `.` or `..`, nor an empty segment.
        if self.is_templated()
            && path
                .split('/')
                .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(ResolveError::Unsafe {
                template: self.text.clone(),
                var: "the resolved path",
                principal: principal.id.to_string(),
            });
        }
        Ok(path)
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_safe_segment(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// What a credential template puts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretVar {
    /// `{secret}`: the secret (a file's or variable's content, or the source's `field`).
    Secret,
    /// `{secret_base64}`: its base64.
    SecretBase64,
    /// `{secret.<field>}`: one field of a Vault secret (a lease's `username`).
    Field(String),
}

/// A credential's wire form: text with the secret, or fields of it, in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate {
    pieces: Vec<Piece<SecretVarIndex>>,
    fields: Vec<String>,
}

/// A [`SecretVar`], with fields by their index in [`ValueTemplate::fields`] (so pieces are
/// `Copy` while parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretVarIndex {
    Secret,
    SecretBase64,
    Field(usize),
}

impl ValueTemplate {
    pub fn parse(text: &str) -> Result<ValueTemplate, TemplateError> {
        // Field names are collected first so the parser's lookup can hand out indices.
        let mut fields: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            if let Some(field) = after[..close].strip_prefix("secret.")
                && !fields.iter().any(|f| f == field)
            {
                fields.push(field.to_owned());
            }
            rest = &after[close + 1..];
        }
        let pieces = parse(
            text,
            |name| match name {
                "secret" => Some(SecretVarIndex::Secret),
                "secret_base64" => Some(SecretVarIndex::SecretBase64),
                _ => name
                    .strip_prefix("secret.")
                    .filter(|f| !f.is_empty())
                    .and_then(|f| fields.iter().position(|x| x == f))
                    .map(SecretVarIndex::Field),
            },
            "{secret}, {secret_base64}, {secret.<field>}",
        )?;
        Ok(ValueTemplate { pieces, fields })
    }

    /// The placeholders it uses.
    pub fn vars(&self) -> impl Iterator<Item = SecretVar> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Text(_) => None,
            Piece::Var(SecretVarIndex::Secret) => Some(SecretVar::Secret),
            Piece::Var(SecretVarIndex::SecretBase64) => Some(SecretVar::SecretBase64),
            Piece::Var(SecretVarIndex::Field(i)) => Some(SecretVar::Field(self.fields[*i].clone())),
        })
    }

    /// Whether it puts any of the secret in.
    pub fn uses_secret(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(_)))
    }

    /// The text with the secret put in; `field` looks up `{secret.<name>}` (`None`: no such
    /// field, an error naming it).
    pub fn render<'s>(
        &self,
        secret: Option<&str>,
        field: impl Fn(&str) -> Option<&'s str>,
    ) -> Result<Zeroizing<String>, MissingValue> {
        use base64::Engine as _;
        let mut out = Zeroizing::new(String::new());
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(SecretVarIndex::Secret) => {
                    out.push_str(secret.ok_or(MissingValue::Secret)?)
                }
                Piece::Var(SecretVarIndex::SecretBase64) => {
                    let encoded = Zeroizing::new(
                        base64::engine::general_purpose::STANDARD
                            .encode(secret.ok_or(MissingValue::Secret)?),
                    );
                    out.push_str(&encoded);
                }
                Piece::Var(SecretVarIndex::Field(i)) => {
                    let name = &self.fields[*i];
                    out.push_str(field(name).ok_or_else(|| MissingValue::Field(name.clone()))?);
                }
            }
        }
        Ok(out)
    }
}

/// What a template asked for that the secret does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingValue {
    /// `{secret}`: the source names no single value (a Vault secret without `field`).
    Secret,
    /// `{secret.<name>}`.
    Field(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn agent(id: &str, owner: Option<&str>) -> Principal {
        let mut p = Principal::anonymous();
        p.id = Arc::from(id);
        p.owner = owner.map(Arc::from);
        p
    }

    #[test]
    fn a_path_takes_principal_attributes_and_refuses_what_would_change_its_shape() {
        let t = PathTemplate::parse("secret/agents/{principal.owner}/github").unwrap();
        assert!(t.is_templated());
        assert_eq!(
            t.resolve(&agent("ci", Some("team-a"))).unwrap(),
            "secret/agents/team-a/github"
        );
        for bad in ["../admin", "a/b", "..", "", "x y", "é"] {
            assert!(
                matches!(
                    t.resolve(&agent("ci", Some(bad))),
                    Err(ResolveError::Unsafe { .. })
                ),
                "{bad:?} must be refused"
            );
        }
        let joined = PathTemplate::parse("secret/x/{principal.owner}{principal.fleet}/k").unwrap();
        let mut dots = agent("ci", Some("."));
        dots.fleet = Some(Arc::from("."));
        assert!(matches!(
            joined.resolve(&dots),
            Err(ResolveError::Unsafe { .. })
        ));
        assert!(PathTemplate::parse("{principal.owner}/github").is_err());
        let missing = t.resolve(&agent("ci", None)).unwrap_err();
        assert!(missing.to_string().contains("principal.owner"), "{missing}");
        let fixed = PathTemplate::parse("secret/openai").unwrap();
        assert!(!fixed.is_templated());
        assert_eq!(fixed.resolve(&agent("x", None)).unwrap(), "secret/openai");
    }

    fn issued(id: &str, issuer: &str) -> Principal {
        let mut p = agent(id, None);
        p.issuer = Arc::from(issuer);
        p
    }

    #[test]
    fn the_issuer_is_one_segment_of_its_own_for_each_issuer() {
        let t =
            PathTemplate::parse("secret/agents/{principal.issuer}/{principal.id}/github").unwrap();
        let corp = "https://login.example.com/realms/agents";
        assert_eq!(
            t.resolve(&issued("ci-bot", corp)).unwrap(),
            "secret/agents/https_3A_2F_2Flogin.example.com_2Frealms_2Fagents/ci-bot/github"
        );
        assert_eq!(
            t.resolve(&issued("ci-bot", "warden")).unwrap(),
            "secret/agents/warden/ci-bot/github"
        );
        assert_eq!(
            t.resolve(&issued("ci-bot", "mtls")).unwrap(),
            "secret/agents/mtls/ci-bot/github"
        );
        // Separators, dot segments and percent escapes stay inside the issuer's one segment.
        for (issuer, segment) in [
            (
                "https://evil.example/../warden",
                "https_3A_2F_2Fevil.example_2F.._2Fwarden",
            ),
            ("warden/..", "warden_2F.."),
            ("x%2F..%2Fwarden", "x_252F.._252Fwarden"),
            ("a_2F", "a_5F2F"),
            ("a/", "a_2F"),
            ("a\\b c?#*", "a_5Cb_20c_3F_23_2A"),
            ("é", "_C3_A9"),
        ] {
            assert_eq!(issuer_segment(issuer), segment, "{issuer:?}");
            let path = t.resolve(&issued("ci-bot", issuer)).unwrap();
            assert_eq!(path, format!("secret/agents/{segment}/ci-bot/github"));
            assert_eq!(path.split('/').count(), 5, "{path}");
        }
        // An issuer that would be a dot segment or an empty one gives no path.
        for issuer in [".", "..", ""] {
            assert!(
                matches!(
                    t.resolve(&issued("ci-bot", issuer)),
                    Err(ResolveError::Unsafe { .. })
                ),
                "{issuer:?}"
            );
        }
        // Different issuers, different segments (the encoding is one-to-one).
        let issuers = [
            corp, "warden", "mtls", "a/", "a_2F", "a_5F2F", "a%2F", "A/", "a.", "a-",
        ];
        let segments: std::collections::BTreeSet<String> =
            issuers.iter().map(|i| issuer_segment(i)).collect();
        assert_eq!(segments.len(), issuers.len(), "{segments:?}");
        assert!(
            PathTemplate::parse("secret/{principal.issuer}/k")
                .unwrap()
                .is_templated()
        );
    }

    #[test]
    fn unknown_placeholders_are_named_with_what_is_known() {
        let e = PathTemplate::parse("secret/{principal.name}").unwrap_err();
        assert!(e.to_string().contains("{principal.owner}"), "{e}");
        let e = ValueTemplate::parse("Bearer {token}").unwrap_err();
        assert!(e.to_string().contains("{secret.<field>}"), "{e}");
        assert!(!e.to_string().contains("did you mean"), "{e}");
        // One close to a known placeholder is told which.
        let e = PathTemplate::parse("secret/{principal.ownr}/k").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "unknown placeholder {principal.ownr} (did you mean `{principal.owner}`?) in"
            ),
            "{e}"
        );
        let e = ValueTemplate::parse("Bearer {secert}").unwrap_err();
        assert!(e.to_string().contains("(did you mean `{secret}`?)"), "{e}");
        assert!(matches!(
            ValueTemplate::parse("Bearer {secret").unwrap_err(),
            TemplateError::Unclosed(_)
        ));
    }

    #[test]
    fn a_value_template_puts_in_the_secret_its_base64_and_fields() {
        let t =
            ValueTemplate::parse("{secret.username}:{secret.password}|{secret_base64}|{secret}")
                .unwrap();
        let fields = |n: &str| match n {
            "username" => Some("u"),
            "password" => Some("p"),
            _ => None,
        };
        assert_eq!(&*t.render(Some("ab"), fields).unwrap(), "u:p|YWI=|ab");
        assert_eq!(
            t.vars().collect::<Vec<_>>(),
            vec![
                SecretVar::Field("username".into()),
                SecretVar::Field("password".into()),
                SecretVar::SecretBase64,
                SecretVar::Secret
            ]
        );
        assert_eq!(t.render(None, fields).unwrap_err(), MissingValue::Secret);
        let t = ValueTemplate::parse("{secret.token}").unwrap();
        assert_eq!(
            t.render(Some("x"), |_| None).unwrap_err(),
            MissingValue::Field("token".into())
        );
        assert!(!ValueTemplate::parse("static").unwrap().uses_secret());
    }
}

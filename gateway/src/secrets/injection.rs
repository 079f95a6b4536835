//! How a secret becomes what goes upstream: a header (`Authorization: Bearer {secret}`), a
//! query parameter, or HTTP Basic authentication, from a connector's default or a route's
//! `inject:`.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::config::InjectConfig;
use super::credential::{Credential, CredentialError, Placed, SecretOrigin};
use super::echo::{Echo, base64_forms};
use super::template::{MissingValue, SecretVar, ValueTemplate};
use crate::route::connector::CredentialInjection;

/// Where the credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Header {
        name: HeaderName,
        value: ValueTemplate,
    },
    Query {
        name: String,
        value: ValueTemplate,
    },
    Basic {
        username: ValueTemplate,
        password: ValueTemplate,
    },
}

/// A compiled way of sending a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    placement: Placement,
    /// Redact the secret where a response echoes it.
    redact: bool,
}

impl Injection {
    /// The injection of a route: its `inject:` where it says where the credential goes, else
    /// its connector's. `Err` names the key at fault (below `inject`) and why.
    pub fn build(
        connector: Option<&CredentialInjection>,
        inject: Option<&InjectConfig>,
    ) -> Result<Injection, (String, String)> {
        let redact = inject.and_then(|i| i.redact).unwrap_or(true);
        let template = |key: &str, text: &str| {
            let t = ValueTemplate::parse(text).map_err(|e| (key.to_owned(), e.to_string()))?;
            if t.uses_secret() {
                Ok(t)
            } else {
                Err((
                    key.to_owned(),
                    "puts no secret in: use {secret}, {secret_base64} or {secret.<field>}".into(),
                ))
            }
        };
        let header_name = |name: &str| {
            HeaderName::try_from(name).map_err(|_| {
                (
                    "header".to_owned(),
                    format!("{name:?} is not a header name"),
                )
            })
        };
        let placement = match inject {
            Some(i) if i.header.is_some() || i.query.is_some() || i.basic.is_some() => {
                match (&i.header, &i.query, &i.basic) {
                    (Some(header), None, None) => {
                        let default = if header.eq_ignore_ascii_case("authorization") {
                            "Bearer {secret}"
                        } else {
                            "{secret}"
                        };
                        Placement::Header {
                            name: header_name(header)?,
                            value: template("format", i.format.as_deref().unwrap_or(default))?,
                        }
                    }
                    (None, Some(query), None) => {
                        if query.is_empty() || query.contains(['&', '=', '#', ' ']) {
                            return Err((
                                "query".into(),
                                format!("{query:?} is not a query parameter name"),
                            ));
                        }
                        Placement::Query {
                            name: query.clone(),
                            value: template("format", i.format.as_deref().unwrap_or("{secret}"))?,
                        }
                    }
                    (None, None, Some(basic)) => {
                        if i.format.is_some() {
                            return Err((
                                "format".into(),
                                "basic takes no format: its username and password are templates"
                                    .into(),
                            ));
                        }
                        Placement::Basic {
                            username: ValueTemplate::parse(&basic.username)
                                .map_err(|e| ("basic.username".to_owned(), e.to_string()))?,
                            password: template("basic.password", &basic.password)?,
                        }
                    }
                    _ => {
                        return Err((String::new(), "give one of header, query and basic".into()));
                    }
                }
            }
            Some(i) if i.format.is_some() => {
                return Err(("format".into(), "format goes with header or query".into()));
            }
            _ => {
                let Some(c) = connector else {
                    return Err((
                        String::new(),
                        "the connector sends no credential: say where it goes (header, query or basic)"
                            .into(),
                    ));
                };
                Placement::Header {
                    name: header_name(&c.header)?,
                    value: template("format", &c.format)?,
                }
            }
        };
        Ok(Injection { placement, redact })
    }

    /// Its templates: the value, or Basic's username and password.
    fn templates(&self) -> Vec<&ValueTemplate> {
        match &self.placement {
            Placement::Header { value, .. } | Placement::Query { value, .. } => vec![value],
            Placement::Basic { username, password } => vec![username, password],
        }
    }

    /// The `{secret.<field>}` names its templates use.
    pub fn fields(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for t in self.templates() {
            for v in t.vars() {
                if let SecretVar::Field(f) = v
                    && !fields.contains(&f)
                {
                    fields.push(f);
                }
            }
        }
        fields
    }

    /// Whether its templates use `{secret}` (or its base64).
    pub fn uses_secret(&self) -> bool {
        self.templates()
            .iter()
            .any(|t| t.vars().any(|v| !matches!(v, SecretVar::Field(_))))
    }

    /// The credential made of `secret` (the single value, when the source has one) and the
    /// secret's fields (`field`), read from `origin` (named in errors; never a value).
    pub fn render<'s>(
        &self,
        secret: Option<&'s str>,
        field: impl Fn(&str) -> Option<&'s str> + Copy,
        origin: &str,
        from: Option<Arc<SecretOrigin>>,
    ) -> Result<Credential, CredentialError> {
        let missing = |m: MissingValue| {
            CredentialError::Missing {
            origin: origin.to_owned(),
            what: match m {
                MissingValue::Secret => {
                    "{secret} (the secret has several fields: set field:, or name them as {secret.<field>})".into()
                }
                MissingValue::Field(f) => format!("field {f:?}"),
            },
        }
        };
        let secret = secret.map(str::trim);
        // What a response could echo: values (found in any spelling, and as hex) and their
        // base64 forms.
        let mut values: Vec<Zeroizing<String>> = Vec::new();
        let mut encodings: Vec<Zeroizing<String>> = Vec::new();
        let placed = match &self.placement {
            Placement::Header { name, value } => {
                let text = value.render(secret, field).map_err(missing)?;
                Placed::Header(name.clone(), header_value(&text, origin)?)
            }
            Placement::Query { name, value } => {
                let text = value.render(secret, field).map_err(missing)?;
                let encoded = Zeroizing::new(
                    percent_encoding::utf8_percent_encode(&text, QUERY_VALUE).to_string(),
                );
                if self.redact {
                    // Its percent-encoded form is one of its spellings.
                    values.push(Zeroizing::new(text.to_string()));
                }
                Placed::Query(name.clone(), encoded)
            }
            Placement::Basic { username, password } => {
                use base64::Engine as _;
                let mut pair = username.render(secret, field).map_err(missing)?;
                pair.push(':');
                pair.push_str(&password.render(secret, field).map_err(missing)?);
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*pair));
                if self.redact {
                    encodings.extend(base64_forms(pair.as_bytes()));
                }
                let value = Zeroizing::new(format!("Basic {}", &*encoded));
                Placed::Header(http::header::AUTHORIZATION, header_value(&value, origin)?)
            }
        };
        if self.redact {
            if let Some(s) = secret {
                values.push(Zeroizing::new(s.to_owned()));
            }
            for name in self.fields() {
                if let Some(v) = field(&name) {
                    values.push(Zeroizing::new(v.to_owned()));
                }
            }
            if self.uses_secret()
                && let Some(s) = secret
            {
                encodings.extend(base64_forms(s.as_bytes()));
            }
        }
        Ok(Credential {
            placed,
            // Built once here, with the credential: a cached secret's requests only search.
            echo: Arc::new(Echo::of_secret(values, encodings)),
            origin: from,
        })
    }
}

/// Characters escaped in a query parameter's value.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn header_value(text: &str, origin: &str) -> Result<HeaderValue, CredentialError> {
    let mut value = HeaderValue::try_from(text)
        .map_err(|_| CredentialError::InvalidValue(origin.to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::config::BasicAuth;

    fn bearer() -> CredentialInjection {
        CredentialInjection {
            header: "authorization".into(),
            format: "Bearer {secret}".into(),
            optional: false,
        }
    }

    fn header(c: &Credential) -> (&str, &[u8]) {
        match &c.placed {
            Placed::Header(n, v) => (n.as_str(), v.as_bytes()),
            Placed::Query(..) => panic!("not a header"),
        }
    }

    #[test]
    fn the_connector_default_is_used_unless_the_route_says_otherwise() {
        let i = Injection::build(Some(&bearer()), None).unwrap();
        let c = i
            .render(Some("sk-123456"), |_| None, "env K", None)
            .unwrap();
        assert_eq!(header(&c), ("authorization", &b"Bearer sk-123456"[..]));
        let Placed::Header(_, v) = &c.placed else {
            unreachable!()
        };
        assert!(v.is_sensitive());
        let found = |c: &Credential, form: &str| c.echo.find(form.as_bytes(), 0);
        for form in ["sk-123456", "c2stMTIzNDU2", "736b2d313233343536"] {
            assert_eq!(found(&c, form), Some((0, form.len())), "{form}");
        }
        // A secret with a `/` is also found JSON-escaped and percent-encoded.
        let c = i
            .render(Some("sk-12/3456"), |_| None, "env K", None)
            .unwrap();
        for form in ["sk-12/3456", "sk-12\\/3456", "sk-12%2F3456", "sk-12%2f3456"] {
            assert_eq!(found(&c, form), Some((0, form.len())), "{form}");
        }
        let only_redact = InjectConfig {
            redact: Some(false),
            ..Default::default()
        };
        let i = Injection::build(Some(&bearer()), Some(&only_redact)).unwrap();
        let c = i
            .render(Some("sk-123456"), |_| None, "env K", None)
            .unwrap();
        assert!(c.echo.is_empty(), "redact: false keeps nothing to redact");
    }

    #[test]
    fn a_query_parameter_is_encoded_and_basic_auth_takes_lease_fields() {
        let q = InjectConfig {
            query: Some("api_key".into()),
            ..Default::default()
        };
        let i = Injection::build(Some(&bearer()), Some(&q)).unwrap();
        let c = i.render(Some("a b&c=d"), |_| None, "kv", None).unwrap();
        match &c.placed {
            Placed::Query(n, v) => {
                assert_eq!((n.as_str(), v.as_str()), ("api_key", "a%20b%26c%3Dd"))
            }
            Placed::Header(..) => panic!("not a query"),
        }
        // The encoded value an upstream quotes is one spelling of the value redaction finds.
        assert_eq!(c.echo.find(b"?api_key=a%20b%26c%3Dd", 0), Some((9, 22)));
        let basic = InjectConfig {
            basic: Some(BasicAuth {
                username: "{secret.username}".into(),
                password: "{secret.password}".into(),
            }),
            ..Default::default()
        };
        let i = Injection::build(None, Some(&basic)).unwrap();
        assert_eq!(
            i.fields(),
            vec!["username".to_owned(), "password".to_owned()]
        );
        assert!(!i.uses_secret());
        let lease = |n: &str| match n {
            "username" => Some("v-token-ro-abc"),
            "password" => Some("A1a-secret-pw"),
            _ => None,
        };
        let c = i
            .render(None, lease, "lease database/creds/ro", None)
            .unwrap();
        // base64("v-token-ro-abc:A1a-secret-pw")
        assert_eq!(
            header(&c),
            (
                "authorization",
                &b"Basic di10b2tlbi1yby1hYmM6QTFhLXNlY3JldC1wdw=="[..]
            )
        );
        for form in ["A1a-secret-pw", "di10b2tlbi1yby1hYmM6QTFhLXNlY3JldC1wdw=="] {
            assert_eq!(c.echo.find(form.as_bytes(), 0), Some((0, form.len())));
        }
        let e = i
            .render(None, |_| None, "lease database/creds/ro", None)
            .unwrap_err();
        assert!(e.to_string().contains("\"username\""), "{e}");
    }

    #[test]
    fn wrong_injections_name_their_key() {
        let both = InjectConfig {
            header: Some("x-api-key".into()),
            query: Some("k".into()),
            ..Default::default()
        };
        assert!(
            Injection::build(None, Some(&both))
                .unwrap_err()
                .1
                .contains("one of")
        );
        let no_secret = InjectConfig {
            header: Some("x-api-key".into()),
            format: Some("static".into()),
            ..Default::default()
        };
        assert_eq!(
            Injection::build(None, Some(&no_secret)).unwrap_err().0,
            "format"
        );
        assert!(
            Injection::build(None, None)
                .unwrap_err()
                .1
                .contains("sends no credential")
        );
        let x = InjectConfig {
            header: Some("x-api-key".into()),
            ..Default::default()
        };
        let c = Injection::build(None, Some(&x))
            .unwrap()
            .render(Some("k-0123456"), |_| None, "env", None)
            .unwrap();
        assert_eq!(header(&c), ("x-api-key", &b"k-0123456"[..]));
    }
}

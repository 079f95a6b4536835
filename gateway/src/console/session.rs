//! Console sessions: sign-in and sign-out, the session cookie, CSRF tokens, the same-origin
//! check, the security headers, and the brake on guessed codes.
//!
//! - The session id is 256 random bits in an `HttpOnly`, `Secure`, `SameSite=Lax` cookie
//!   (`__Host-` prefixed on https); the store keeps only its SHA-256, so a copy of the store
//!   opens no session. Sessions end at `console.session_ttl`, when the sign-in's ID token
//!   expires if that is sooner (`console.oidc.session_follows_id_token`; a newer ID token a
//!   refresh brings moves that end, `console::refresh`), when its access
//!   token at the provider does and the provider gave no refresh token to renew it
//!   (`console.oidc.recheck_at_vote` asks the provider with it), when the provider refuses to
//!   renew it, or at sign-out.
//! - The CSRF token is derived from the session id (HMAC-SHA256), so every page can carry it
//!   while the store keeps only its hash; every POST must bring it (a form field, or the
//!   `x-csrf-token` header for the passkey calls) and, when the browser says where it comes
//!   from (`Origin`), come from the console's own origin.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::Sha256;

use super::app::{Console, Peer};
use super::error::{ConsoleError, html, see_other};
use super::idp_token::IdpToken;
use super::pages;
use super::sso::{CallbackQuery, constant_time_eq};
use crate::state::sessions::{ConsoleSession, NewSession};

/// The sign-in in flight's cookie, as `(name, path)`. On https it is `__Host-` prefixed (which
/// needs `Path=/` and `Secure`), so no other host of the domain can set or replace it with a
/// sign-in of its own; on plain http (loopback) it keeps its plain name, scoped to `/auth`,
/// as the session cookie does.
pub(crate) fn login_cookie(https: bool) -> (&'static str, &'static str) {
    if https {
        ("__Host-warden-login", "/")
    } else {
        ("warden-login", "/auth")
    }
}

/// The `Set-Cookie` value of cookie `name`: `HttpOnly`, `Secure`, `SameSite=Lax`.
fn set_cookie_value(name: &str, value: &str, path: &str, max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        max_age.as_secs()
    ))
    .expect("cookie values are base64url")
}

/// The Content-Security-Policy of every answer: the console's own script and stylesheet only,
/// no inline code, no framing, forms and requests to itself only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                       data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'";

/// Adds the security headers every console answer carries.
pub fn secure_headers(headers: &mut HeaderMap, https: bool) {
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    set(headers, "cache-control", "no-store");
    if https {
        set(
            headers,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
}

/// A signed-in approver.
pub struct Session {
    /// The session id (from the cookie).
    pub id: String,
    pub record: ConsoleSession,
    /// The CSRF token of this session.
    pub csrf: String,
}

impl Session {
    /// How the pages show them.
    pub fn viewer(&self) -> pages::Viewer<'_> {
        pages::Viewer {
            display_name: &self.record.display_name,
            subject: &self.record.subject,
            csrf: &self.csrf,
        }
    }

    /// Whether the sign-in is recent enough to change second factors.
    pub fn is_fresh(&self, within: Duration) -> bool {
        let age = crate::state::pins::now_ms() - self.record.created_ms;
        u128::try_from(age).is_ok_and(|age| age <= within.as_millis())
    }
}

/// The CSRF token of session `id`.
pub fn csrf_token(id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(id.as_bytes()).expect("any key length");
    mac.update(b"warden-console-csrf");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in `headers`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Console {
    /// The session cookie's name.
    pub(crate) fn session_cookie(&self) -> &'static str {
        if self.https() {
            "__Host-warden-session"
        } else {
            "warden-session"
        }
    }

    pub(crate) fn set_cookie(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age: Duration,
    ) -> HeaderValue {
        set_cookie_value(name, value, path, max_age)
    }

    /// The signed-in approver of this request, if any.
    pub(crate) async fn session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Session>, ConsoleError> {
        let Some(id) = cookie(headers, self.session_cookie()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let Some(record) = self.store.sessions().resume(id).await? else {
            return Ok(None);
        };
        Ok(Some(Session {
            id: id.to_owned(),
            csrf: csrf_token(id),
            record,
        }))
    }

    /// The signed-in approver, or [`ConsoleError::SignIn`].
    pub(crate) async fn signed_in(&self, headers: &HeaderMap) -> Result<Session, ConsoleError> {
        self.session(headers).await?.ok_or(ConsoleError::SignIn)
    }

    /// A POST's checks: it comes from the console's own origin (when the browser says) and
    /// carries the session's CSRF token.
    pub(crate) fn check_post(
        &self,
        headers: &HeaderMap,
        session: &Session,
        token: Option<&str>,
    ) -> Result<(), ConsoleError> {
        same_origin(headers, &self.origin)?;
        let token = token
            .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
            .unwrap_or_default();
        if token.is_empty() || !session.record.csrf_matches(token) {
            return Err(ConsoleError::Csrf);
        }
        Ok(())
    }
}

/// Whether a POST comes from `origin`'s own pages, as far as the browser says: its `Origin`
/// (when sent) is `origin`, and its `Sec-Fetch-Site` (when sent) is `same-origin`.
pub fn same_origin(headers: &HeaderMap, origin: &str) -> Result<(), ConsoleError> {
    if let Some(given) = headers.get(header::ORIGIN)
        && given.as_bytes() != origin.as_bytes()
    {
        return Err(ConsoleError::CrossOrigin);
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(ConsoleError::CrossOrigin);
    }
    Ok(())
}

/// Where a sign-in may lead: a page of the console (`/approvals…`, `/factors…`), never
/// another site. Browsers drop tabs and newlines from URLs and read `\\` as `/`, so a path
/// with any control character or backslash leads to the pending list instead.
pub fn safe_next(next: Option<&str>) -> String {
    let page = |n: &str, root: &str| {
        n.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    };
    match next {
        Some(n)
            if (page(n, "/approvals") || page(n, "/factors"))
                && n.len() < 512
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_owned()
        }
        _ => "/approvals".to_owned(),
    }
}

/// The page for a GET without a session: to the sign-in, coming back to `path`.
pub fn to_login(path: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
    see_other(&format!("/login?next={next}"))
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: off to the SSO provider.
pub async fn login(State(c): State<Arc<Console>>, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    match c.sso.start(&c.sealer, &next).await {
        Ok((url, sealed)) => {
            let mut response = see_other(&url);
            let (name, path) = login_cookie(c.https());
            let cookie = c.set_cookie(
                name,
                &URL_SAFE_NO_PAD.encode(sealed),
                path,
                super::sso::LOGIN_TTL,
            );
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in cannot start");
            ConsoleError::from(e).page(None)
        }
    }
}

/// `GET /auth/callback`: the provider's answer; a session on success.
pub async fn callback(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Query(answer): Query<CallbackQuery>,
) -> Response {
    let source = peer.map(|p| p.0.0.ip());
    let (login, login_path) = login_cookie(c.https());
    let sealed = cookie(&headers, login).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    let clear_login = c.set_cookie(login, "", login_path, Duration::ZERO);
    let who = match c.sso.finish(&c.sealer, sealed.as_deref(), &answer).await {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!(error = %e, "console sign-in refused");
            c.audit_unauthenticated(
                source,
                "console_sign_in_refused",
                serde_json::json!({ "event": "console_sign_in_refused", "reason": e.to_string() }),
            );
            let mut page = ConsoleError::from(e).page(None);
            page.headers_mut().append(header::SET_COOKIE, clear_login);
            return page;
        }
    };
    let id = random_token();
    let oidc = c.config.oidc.as_ref();
    let follows = oidc.is_some_and(|o| o.session_follows_id_token);
    // Asking the provider again needs its access token: kept sealed with the session, with the
    // refresh token that renews it. Without one, the session ends when the access token does
    // (the provider would refuse it then).
    let recheck = oidc.is_some_and(|o| o.recheck_at_vote);
    let idp_token = who.idp_token.as_ref().filter(|_| recheck);
    let ttl = lifetime(
        c.config.session_ttl,
        [
            who.id_token_expires.filter(|_| follows),
            idp_token.and_then(ends_session_at),
        ]
        .into_iter()
        .flatten()
        .min(),
        std::time::SystemTime::now(),
    );
    // A session its refresh token renews may outlive the sign-in's ID token (a refreshed one
    // moves its end, `console::refresh`): its cookie lasts `session_ttl`, and the store says
    // when the session ends.
    let cookie_ttl = if idp_token.is_some_and(|t| t.refresh_secret().is_some()) {
        c.config.session_ttl
    } else {
        ttl
    };
    let sealed_idp_token = match idp_token.map(|t| t.seal(&c.sealer, &id)).transpose() {
        Ok(sealed) => sealed,
        Err(e) => {
            let mut page =
                ConsoleError::from(super::sso::SsoError::Config(e.to_string())).page(None);
            page.headers_mut().append(header::SET_COOKIE, clear_login);
            return page;
        }
    };
    let created = c
        .store
        .sessions()
        .create(NewSession {
            id: id.clone(),
            csrf_token: csrf_token(&id),
            subject: who.subject.clone(),
            display_name: who.display_name.clone(),
            groups: who.groups.clone(),
            aliases: who.aliases.clone(),
            sealed_idp_token,
            ttl,
        })
        .await;
    if let Err(e) = created {
        return ConsoleError::from(e).page(None);
    }
    // The session counts only once its sign-in is recorded.
    let recorded = c
        .audit(
            Some(&who.subject),
            source,
            serde_json::json!({
                "event": "console_sign_in",
                "subject": who.subject,
                "name": who.display_name,
                "groups": who.groups,
                "aliases": who.aliases,
            }),
        )
        .await;
    if let Err(e) = recorded {
        if let Err(gone) = c.store.sessions().delete(&id).await {
            tracing::warn!(error = %gone, "an unrecorded console session could not be removed");
        }
        let mut page = e.page(None);
        page.headers_mut().append(header::SET_COOKIE, clear_login);
        return page;
    }
    let mut response = see_other(&who.next);
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        c.set_cookie(c.session_cookie(), &id, "/", cookie_ttl),
    );
    headers.append(header::SET_COOKIE, clear_login);
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`: the session ends, here and on every replica.
pub async fn logout(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let session = match c.signed_in(&headers).await {
        Ok(s) => s,
        Err(ConsoleError::SignIn) => return see_other("/signed-out"),
        Err(e) => return e.page(None),
    };
    if let Err(e) = c.check_post(&headers, &session, form.csrf.as_deref()) {
        return e.page(Some(&session.viewer()));
    }
    if let Err(e) = c.store.sessions().delete(&session.id).await {
        return ConsoleError::from(e).page(Some(&session.viewer()));
    }
    // Signed out whatever happens next; the record is awaited, and a log that cannot take it
    // says so in Warden's own log (the session is gone either way).
    let recorded = c
        .audit(
            Some(&session.record.subject),
            peer.map(|p| p.0.0.ip()),
            serde_json::json!({ "event": "console_sign_out", "subject": session.record.subject }),
        )
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, subject = %session.record.subject, "a console sign-out could not be recorded");
    }
    let mut response = see_other("/signed-out");
    response.headers_mut().append(
        header::SET_COOKIE,
        c.set_cookie(c.session_cookie(), "", "/", Duration::ZERO),
    );
    response
}

/// `GET /signed-out`.
pub async fn signed_out() -> Response {
    html(
        axum::http::StatusCode::OK,
        pages::layout("Signed out", None, &pages::signed_out()),
    )
}

/// How long a session signed in at `now` lasts: `configured` (`console.session_ttl`), or less
/// when the sign-in's ID token expires sooner (`id_token_expires`, when sessions follow it).
/// At least a second: an ID token verified as unexpired a moment ago gives a session that ends
/// at once rather than one that never began.
pub fn lifetime(
    configured: Duration,
    id_token_expires: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
) -> Duration {
    let vouched = id_token_expires.map(|exp| exp.duration_since(now).unwrap_or_default());
    vouched
        .map_or(configured, |left| configured.min(left))
        .max(Duration::from_secs(1))
}

/// When the kept access token `token` ends its session: when it expires, unless a refresh
/// token renews it (`console::refresh`).
pub fn ends_session_at(token: &IdpToken) -> Option<std::time::SystemTime> {
    token.expires().filter(|_| token.refresh_secret().is_none())
}

/// The client address of a request.
pub fn source(peer: &Option<axum::Extension<Peer>>) -> Option<IpAddr> {
    peer.as_ref().map(|p| p.0.0.ip())
}

/// Whether `a` equals `b` without telling where they differ.
pub fn same(a: &str, b: &str) -> bool {
    constant_time_eq(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_the_id_token_does_if_that_is_sooner() {
        let now = std::time::SystemTime::now();
        let ttl = Duration::from_secs(8 * 3600);
        let hour = Duration::from_secs(3600);
        assert_eq!(lifetime(ttl, Some(now + hour), now), hour);
        // A token that outlives the configured lifetime does not lengthen the session.
        assert_eq!(lifetime(ttl, Some(now + 30 * hour), now), ttl);
        // Sessions that do not follow the token (or a token without one) last the ttl.
        assert_eq!(lifetime(ttl, None, now), ttl);
        // A token expiring as it is read: a session of a second, never a negative one.
        assert_eq!(lifetime(ttl, Some(now - hour), now), Duration::from_secs(1));
    }

    #[test]
    fn an_access_token_ends_its_session_only_when_nothing_renews_it() {
        let now = std::time::SystemTime::now();
        let minutes = Duration::from_secs(300);
        let token = IdpToken::new("at".into(), "alice".into(), Some(minutes), now);
        let ends = ends_session_at(&token).unwrap();
        let ttl = lifetime(Duration::from_secs(8 * 3600), Some(ends), now);
        assert!((299..=300).contains(&ttl.as_secs()), "{ttl:?}");
        let renewable = token.renewable_with(Some("rt".into()));
        assert_eq!(ends_session_at(&renewable), None, "session_ttl bounds it");
    }

    #[test]
    fn a_sign_in_leads_only_to_the_console_itself() {
        assert_eq!(safe_next(Some("/approvals/apr_1")), "/approvals/apr_1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "approvals",
            "/a\r\nSet-Cookie: x=y",
            "/\t/evil.example",
            "/approvals/\\evil",
            "/approvalsx",
            "/logout",
            "/approvals/\u{7f}",
        ] {
            assert_eq!(safe_next(Some(bad)), "/approvals", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/approvals");
        assert_eq!(safe_next(Some("/factors")), "/factors");
        assert_eq!(safe_next(Some("/approvals?x=1")), "/approvals?x=1");
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        let console = "https://warden.example.com";
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            same_origin(&h, console)
        };
        assert!(with(&[]).is_ok(), "an old browser that sends neither");
        assert!(with(&[("origin", "https://warden.example.com")]).is_ok());
        assert!(with(&[("sec-fetch-site", "same-origin")]).is_ok());
        for bad in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "http://warden.example.com")],
            &[("origin", "null")],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("origin", "https://warden.example.com"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(
                matches!(with(bad), Err(ConsoleError::CrossOrigin)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden-session-x=2; warden-session=3"),
        );
        assert_eq!(cookie(&h, "warden-session"), Some("3"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn the_sign_in_cookie_is_host_prefixed_on_https() {
        let (name, path) = login_cookie(true);
        let set = set_cookie_value(name, "sealed", path, Duration::from_secs(600));
        let set = set.to_str().unwrap();
        assert!(
            set.starts_with("__Host-warden-login=sealed; Path=/; "),
            "{set}"
        );
        assert!(
            set.contains("; Secure") && !set.contains("Domain="),
            "{set}"
        );
        // The callback reads the cookie under the name it was set with, and no other.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("warden-login=tossed; __Host-warden-login=sealed"),
        );
        assert_eq!(cookie(&h, name), Some("sealed"));
        // Plain http (a loopback console) keeps the plain name, as the session cookie does.
        assert_eq!(login_cookie(false), ("warden-login", "/auth"));
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let a = csrf_token("session-a");
        assert_eq!(a, csrf_token("session-a"));
        assert_ne!(a, csrf_token("session-b"));
        assert!(!a.contains("session-a"));
    }

    #[test]
    fn every_answer_forbids_inline_code_and_framing() {
        let mut h = HeaderMap::new();
        secure_headers(&mut h, true);
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["cache-control"], "no-store");
        assert!(h.contains_key("strict-transport-security"));
    }
}

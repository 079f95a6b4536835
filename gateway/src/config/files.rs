//! Checks of the files a configuration names: listener certificates and keys, CA bundles,
//! Warden's token-signing key and its approvals factor key. Each is read the way start-up reads it, so `warden check`
//! reports what `warden serve` would stop on, and start-up names the key at fault. Nothing is
//! created or written, and nothing is fetched over the network.

use super::Config;
use super::error::ConfigError;
use super::locate::Source;
use crate::identity::{TokenIssuer, read_ca_bundle};
use crate::listener::ServerTls;

/// Every mistake in the files `config` names, each located at its key in `source`.
pub fn check_files(config: &Config, source: &Source) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let listeners = [
        ("listen.tls", &config.listen.tls),
        ("listen.admin_tls", &config.listen.admin_tls),
        ("egress.tls", &config.egress.tls),
    ];
    for (section, tls) in listeners {
        let Some(tls) = tls else { continue };
        for (field, error) in ServerTls::check(tls) {
            let (key, path) = match field {
                Some(field) => {
                    let path = match field {
                        "cert" => Some(&tls.cert),
                        "key" => Some(&tls.key),
                        "client_ca" => tls.client_ca.as_ref(),
                        _ => None,
                    };
                    (format!("{section}.{field}"), path)
                }
                None => (section.to_string(), None),
            };
            let message = match path {
                Some(path) => nearby(error.to_string(), path),
                None => error.to_string(),
            };
            errors.push(source.error(&key, message));
        }
    }
    if let Some(path) = &config.upstream.ca_file
        && let Err(error) = crate::upstream::check_ca_file(path)
    {
        errors.push(source.error("upstream.ca_file", nearby(error.to_string(), path)));
    }
    if let Some(path) = config.traces.as_ref().and_then(|t| t.ca_file.as_ref())
        && let Err(error) = crate::upstream::check_ca_file(path)
    {
        errors.push(source.error("traces.ca_file", nearby(error.to_string(), path)));
    }
    for (i, issuer) in config.identity.issuers.iter().enumerate() {
        if let Some(path) = &issuer.ca_file
            && let Err(problem) = read_ca_bundle(path)
        {
            errors.push(source.error(
                &format!("identity.issuers[{i}].ca_file"),
                nearby(problem, path),
            ));
        }
    }
    let warden = &config.identity.warden_issuer;
    if warden.enabled
        && let Err(error) = TokenIssuer::check_key_file(warden, &config.data_dir)
    {
        errors.push(source.error("identity.warden_issuer.key_file", error.to_string()));
    }
    let signing =
        (warden.key.is_none()).then(|| crate::identity::issuer_key_path(warden, &config.data_dir));
    check_previous_keys(
        &warden.previous_keys,
        signing.as_deref(),
        "identity.warden_issuer.previous_keys",
        source,
        &mut errors,
    );
    if let Err(error) = crate::audit::signer::Signer::check(&config.audit.signing, &config.data_dir)
    {
        errors.push(source.error("audit.signing.key_file", error.to_string()));
    }
    let signing = (config.audit.signing.key.is_none())
        .then(|| crate::audit::signer::key_path(&config.audit.signing, &config.data_dir));
    check_previous_keys(
        &config.audit.signing.previous_keys,
        signing.as_deref(),
        "audit.signing.previous_keys",
        source,
        &mut errors,
    );
    if let Err(error) = crate::approval::sealed::check_key_file(&config.approvals, &config.data_dir)
    {
        errors.push(source.error("approvals.factor_key", error.to_string()));
    }
    for (i, path) in config.policy.bundle.public_keys.iter().enumerate() {
        if let Err(error) = crate::policy::bundle::Trust::load(std::slice::from_ref(path)) {
            let key = format!("policy.bundle.public_keys[{i}]");
            errors.push(source.error(&key, nearby(error.to_string(), path)));
        }
    }
    let intercept = &config.egress.intercept;
    if let Some(path) = &intercept.upstream_ca_file
        && let Err(error) = crate::upstream::check_ca_file(path)
    {
        errors.push(source.error(
            "egress.intercept.upstream_ca_file",
            nearby(error.to_string(), path),
        ));
    }
    if let Err(error) = crate::egress::intercept::Ca::check_files(intercept, &config.data_dir) {
        errors.push(source.error("egress.intercept.ca_cert", error.to_string()));
    }
    errors
}

/// `message`, about the file at `path`, with the file beside it that was most likely meant
/// when there is none at `path` ([`super::suggest::nearby_file`]).
fn nearby(message: String, path: &std::path::Path) -> String {
    match super::suggest::nearby_file(path) {
        Some(meant) => format!("{message} (did you mean `{}`?)", meant.display()),
        None => message,
    }
}

/// Each retired key of `entries` (the configuration key `key`) must be readable, and, beside
/// the signing key in the file `signing` (when the key is a file that exists; one from a secret
/// source is read only at start), neither be that key itself nor be listed twice: what start-up
/// refuses (`keys::retired`).
fn check_previous_keys(
    entries: &[crate::keys::PreviousKey],
    signing: Option<&std::path::Path>,
    key: &str,
    source: &Source,
    errors: &mut Vec<ConfigError>,
) {
    let mut readable = true;
    for (i, entry) in entries.iter().enumerate() {
        if let Err(error) = crate::keys::public_from_file(&entry.path) {
            let message = nearby(error.to_string(), &entry.path);
            errors.push(source.error(&format!("{key}[{i}]"), message));
            readable = false;
        }
    }
    // A missing or unreadable signing key file is reported on its own (or created at start).
    let current = signing
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|pem| crate::keys::from_pem(&pem, "").ok())
        .map(|signing| crate::keys::thumbprint(&signing.verifying_key().to_bytes()));
    // Without a signing key to compare (none yet, or one from a secret source), an id no key
    // has: the entries are still checked against each other.
    if readable
        && let Err(crate::keys::KeyError::Retired { key, problem }) =
            crate::keys::retired(entries, current.as_deref().unwrap_or_default(), key)
    {
        errors.push(source.error(&key, problem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse_partial;
    use crate::listener::test_pki::TestCa;
    use std::path::{Path, PathBuf};

    /// The file mistakes in configuration `yaml` (read from `warden.yaml`), as printed.
    fn file_errors(yaml: &str) -> Vec<String> {
        let parsed = parse_partial(yaml, Some(Path::new("warden.yaml")));
        assert!(
            parsed.errors.is_empty(),
            "config itself: {:?}",
            parsed.errors
        );
        check_files(&parsed.config, &parsed.source)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    /// A data dir with no signing key yet, so Warden's issuer adds no error of its own.
    fn data_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn a_file_that_is_not_there_is_told_the_nearest_one_beside_it() {
        let dir = data_dir();
        write(dir.path(), "upstream-ca.pem", "not read");
        write(dir.path(), "bundle.pub", "not read");
        let yaml = format!(
            "data_dir: {d}\nupstream:\n  ca_file: {d}/upstream_ca.pem\npolicy:\n  bundle:\n    \
             public_keys:\n      - {d}/bundle.pbu\n      - {d}/elsewhere.pem\n",
            d = dir.path().display(),
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 3, "{errors:?}");
        let d = dir.path().display();
        assert!(
            errors[0].starts_with("warden.yaml:3: upstream.ca_file: ")
                && errors[0].ends_with(&format!(" (did you mean `{d}/upstream-ca.pem`?)")),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("warden.yaml:7: policy.bundle.public_keys[0]: ")
                && errors[1].ends_with(&format!(" (did you mean `{d}/bundle.pub`?)")),
            "{errors:?}"
        );
        assert!(!errors[2].contains("did you mean"), "{errors:?}");
    }

    #[test]
    fn a_missing_bundle_public_key_is_named_at_its_line() {
        let dir = data_dir();
        let yaml = format!(
            "data_dir: {d}\npolicy:\n  bundle:\n    public_keys:\n      - {d}/bk.pubb\n",
            d = dir.path().display(),
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("warden.yaml:5: policy.bundle.public_keys[0]: ")
                && errors[0].contains("bk.pubb"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_previous_key_that_is_the_signing_key_itself_is_refused_as_start_up_refuses_it() {
        let dir = data_dir();
        let agent = dir.path().join("keys").join("agent-signing.pem");
        crate::keys::load_or_create(&agent, "test key").unwrap();
        let audit = dir.path().join("keys").join("audit-signing.pem");
        crate::keys::load_or_create(&audit, "test key").unwrap();
        let yaml = format!(
            "data_dir: {d}\nidentity:\n  warden_issuer:\n    previous_keys: [{a}]\n\
             audit:\n  signing:\n    previous_keys:\n      - {{ path: {u} }}\n",
            d = dir.path().display(),
            a = agent.display(),
            u = audit.display(),
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("warden.yaml:4: identity.warden_issuer.previous_keys[0]: ")
                && errors[0].contains("holds the signing key itself"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("warden.yaml:8: audit.signing.previous_keys[0]: ")
                && errors[1].contains("holds the signing key itself"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_previous_key_listed_twice_is_refused_without_a_signing_key_yet() {
        let dir = data_dir();
        let old = dir.path().join("old.pem");
        crate::keys::load_or_create(&old, "test key").unwrap();
        let yaml = format!(
            "data_dir: {d}\nidentity:\n  warden_issuer:\n    previous_keys:\n      - {o}\n      - {o}\n",
            d = dir.path().display(),
            o = old.display(),
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("warden.yaml:6: identity.warden_issuer.previous_keys[1]: ")
                && errors[0].contains("holds the same key"),
            "{errors:?}"
        );
        // A retired key beside another signing key passes.
        let signing = dir.path().join("keys").join("agent-signing.pem");
        crate::keys::load_or_create(&signing, "test key").unwrap();
        let yaml = format!(
            "data_dir: {d}\nidentity:\n  warden_issuer:\n    previous_keys: [{o}]\n",
            d = dir.path().display(),
            o = old.display(),
        );
        assert_eq!(file_errors(&yaml), Vec::<String>::new());
    }

    #[test]
    fn usable_files_raise_no_error() {
        let dir = data_dir();
        let ca = TestCa::new("files");
        let leaf = ca.server_cert(&["localhost"]);
        let cert = write(dir.path(), "s.crt", &leaf.cert_pem);
        let key = write(dir.path(), "s.key", &leaf.key_pem);
        let bundle = write(dir.path(), "ca.pem", &ca.cert_pem);
        let yaml = format!(
            "data_dir: {d}\nlisten:\n  tls: {{ cert: {c}, key: {k}, client_ca: {b} }}\n\
             upstream:\n  ca_file: {b}\n",
            d = dir.path().display(),
            c = cert.display(),
            k = key.display(),
            b = bundle.display(),
        );
        assert_eq!(file_errors(&yaml), Vec::<String>::new());
    }

    #[test]
    fn missing_listener_cert_and_key_are_each_located_at_their_key() {
        let dir = data_dir();
        let yaml = format!(
            "data_dir: {}\nlisten:\n  tls:\n    cert: /nonexistent/warden/s.crt\n    key: /nonexistent/warden/s.key\n",
            dir.path().display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "warden.yaml:4: listen.tls.cert: cannot read /nonexistent/warden/s.crt"
            ),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with(
                "warden.yaml:5: listen.tls.key: cannot read /nonexistent/warden/s.key"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn admin_key_of_another_certificate_is_located_at_admin_tls_key() {
        let dir = data_dir();
        let ca = TestCa::new("files");
        let cert = write(
            dir.path(),
            "a.crt",
            &ca.server_cert(&["localhost"]).cert_pem,
        );
        let key = write(dir.path(), "a.key", &ca.server_cert(&["localhost"]).key_pem);
        let yaml = format!(
            "data_dir: {}\nlisten:\n  admin_tls:\n    cert: {}\n    key: {}\n",
            dir.path().display(),
            cert.display(),
            key.display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("warden.yaml:5: listen.admin_tls.key: key "),
            "{errors:?}"
        );
    }

    #[test]
    fn certificate_file_without_certificate_and_unusable_client_ca_are_located() {
        let dir = data_dir();
        let leaf = TestCa::new("files").server_cert(&["localhost"]);
        let cert = write(dir.path(), "s.crt", &leaf.key_pem);
        let key = write(dir.path(), "s.key", &leaf.key_pem);
        let empty = write(dir.path(), "ca.pem", "");
        let yaml = format!(
            "data_dir: {}\nlisten:\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n",
            dir.path().display(),
            cert.display(),
            key.display(),
            empty.display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("warden.yaml:4: listen.tls.cert: no certificate found"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("warden.yaml:6: listen.tls.client_ca: client CA bundle"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_unreadable_collector_ca_file_is_located_at_traces_ca_file() {
        let dir = data_dir();
        let yaml = format!(
            "data_dir: {}\ntraces:\n  endpoint: https://collector.example.com/v1/traces\n  ca_file: /nonexistent/warden/otel.pem\n",
            dir.path().display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "warden.yaml:4: traces.ca_file: cannot read /nonexistent/warden/otel.pem"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn unreadable_or_empty_upstream_ca_file_is_located_at_upstream_ca_file() {
        let dir = data_dir();
        let yaml = format!(
            "data_dir: {}\nupstream:\n  ca_file: /nonexistent/warden/ca.pem\n",
            dir.path().display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "warden.yaml:3: upstream.ca_file: cannot read /nonexistent/warden/ca.pem"
            ),
            "{errors:?}"
        );

        let empty = write(dir.path(), "ca.pem", "# no certificate here\n");
        let yaml = format!(
            "data_dir: {}\nupstream:\n  ca_only: true\n  ca_file: {}\n",
            dir.path().display(),
            empty.display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(
            errors,
            [format!(
                "warden.yaml:4: upstream.ca_file: {} holds no PEM `CERTIFICATE` block",
                empty.display()
            )]
        );
    }

    #[test]
    fn unreadable_or_unparsable_issuer_ca_file_is_located_at_its_issuer() {
        let dir = data_dir();
        let garbage = write(
            dir.path(),
            "idp-ca.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let yaml = format!(
            "data_dir: {}\nidentity:\n  issuers:\n    - issuer: https://a.example.com\n      audiences: [warden]\n      ca_file: /nonexistent/warden/idp.pem\n    - issuer: https://b.example.com\n      audiences: [warden]\n      ca_file: {}\n",
            dir.path().display(),
            garbage.display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "warden.yaml:6: identity.issuers[0].ca_file: cannot read /nonexistent/warden/idp.pem"
            ),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with(&format!(
                "warden.yaml:9: identity.issuers[1].ca_file: {} is not a PEM bundle",
                garbage.display()
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn signing_key_that_is_not_an_ed25519_key_is_reported_and_a_missing_one_is_not_created() {
        let dir = data_dir();
        let bad = write(dir.path(), "agent.pem", "not a key");
        let yaml = format!(
            "data_dir: {}\nidentity:\n  warden_issuer:\n    key_file: {}\n",
            dir.path().display(),
            bad.display()
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "warden.yaml:4: identity.warden_issuer.key_file: {} is not an Ed25519 private key",
                bad.display()
            )),
            "{errors:?}"
        );

        let yaml = format!("data_dir: {}\n", dir.path().display());
        assert_eq!(file_errors(&yaml), Vec::<String>::new());
        assert!(
            !dir.path().join("keys").exists(),
            "a check must not create the signing key"
        );
    }

    #[test]
    fn an_approvals_factor_key_file_that_is_no_key_is_reported_and_a_missing_one_is_not_created() {
        let dir = data_dir();
        let yaml = format!("data_dir: {}\n", dir.path().display());
        assert_eq!(file_errors(&yaml), Vec::<String>::new());
        assert!(!dir.path().join("keys").exists(), "a check creates no key");
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let key = write(
            &dir.path().join("keys"),
            "approvals-factor.key",
            "not a key",
        );
        let errors = file_errors(&yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!(
                "warden.yaml: approvals.factor_key: {} is not a factor key",
                key.display()
            )),
            "{errors:?}"
        );
        // With a configured factor_key the file is not Warden's key, and not read.
        let yaml = format!(
            "data_dir: {}\napprovals:\n  factor_key: {{ env: WARDEN_FACTOR_KEY }}\n",
            dir.path().display()
        );
        assert_eq!(file_errors(&yaml), Vec::<String>::new());
    }
}

//! SECURITY.md's "Secure defaults" names settings as `section.key: value`; each must be what the
//! embedded defaults hold and what docs/configuration.md documents as the default, so that the
//! page a security team reads first cannot drift from the code or the reference unnoticed.

use serde::de::DeserializeOwned;

use super::Config;

const SECURITY: &str = include_str!("../../../SECURITY.md");
const CONFIGURATION: &str = include_str!("../../../docs/configuration.md");

/// The `key: value` claims of the "Secure defaults" section: every code span whose key is a
/// dotted configuration path.
fn claims(page: &str) -> Vec<(String, String)> {
    let start = page
        .find("\n## Secure defaults")
        .expect("SECURITY.md has a \"Secure defaults\" section");
    let section = &page[start + 1..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    // A code span may wrap onto the next line.
    let text = section.replace('\n', " ");
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| {
            let (key, value) = span.split_once(": ")?;
            let dotted = key.contains('.')
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
            dotted.then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// Whether `value`, read as the configuration file reads it, is what `config` holds at `key`.
fn holds(config: &Config, key: &str, value: &str) -> Result<bool, String> {
    fn same<T: DeserializeOwned + PartialEq>(value: &str, held: &T) -> Result<bool, String> {
        let claimed: T = serde_saphyr::from_str(value).map_err(|e| format!("{value:?}: {e}"))?;
        Ok(&claimed == held)
    }
    match key {
        "identity.required" => same(value, &config.identity.required),
        "listen.proxy" => same(value, &config.listen.proxy),
        "listen.admin" => same(value, &config.listen.admin),
        "console.listen" => same(value, &config.console.listen),
        "audit.durability" => same(value, &config.audit.durability),
        "audit.fail_closed" => same(value, &config.audit.fail_closed),
        "audit.record_content" => same(value, &config.audit.record_content),
        "audit.receipts" => same(value, &config.audit.receipts),
        "mcp.sandbox.mode" => same(value, &config.mcp.sandbox.mode),
        "budgets.on_stale" => same(value, &config.budgets.on_stale),
        other => Err(format!(
            "`{other}` is not a setting this test reads: add it to `holds` in {}",
            file!()
        )),
    }
}

/// The default docs/configuration.md gives `key` (`section.rest`): the second cell of the row
/// of its section's table whose first cell is `` `rest` `` or `` `key` ``.
fn documented_default(configuration: &str, key: &str) -> Option<String> {
    let (section, rest) = key.split_once('.')?;
    let start = configuration.find(&format!("\n### `{section}`"))? + 1;
    let body = &configuration[start..];
    let body = &body[..body.find("\n### ").unwrap_or(body.len())];
    body.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let named = cells
            .get(1)
            .is_some_and(|c| *c == format!("`{rest}`") || *c == format!("`{key}`"));
        named.then(|| cells.get(2).map(|d| d.trim_matches('`').to_owned()))?
    })
}

#[test]
fn security_md_secure_defaults_are_the_documented_defaults() {
    let claims = claims(SECURITY);
    assert!(
        claims.len() >= 8,
        "SECURITY.md's Secure defaults name fewer settings than they did: {claims:?}"
    );
    let wrong: Vec<String> = claims
        .iter()
        .filter_map(|(key, value)| match documented_default(CONFIGURATION, key) {
            Some(default) if default == *value => None,
            Some(default) => Some(format!(
                "SECURITY.md says `{key}: {value}`, docs/configuration.md's default is `{default}`"
            )),
            None => Some(format!(
                "SECURITY.md names `{key}`, which docs/configuration.md does not document"
            )),
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn security_md_secure_defaults_are_the_embedded_defaults() {
    let config = Config::default();
    let claims = claims(SECURITY);
    let keys: Vec<&str> = claims.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "identity.required",
        "listen.proxy",
        "listen.admin",
        "audit.durability",
        "audit.fail_closed",
        "mcp.sandbox.mode",
    ] {
        assert!(
            keys.contains(&key),
            "SECURITY.md no longer names `{key}`: {keys:?}"
        );
    }
    let wrong: Vec<String> = claims
        .iter()
        .filter_map(|(key, value)| match holds(&config, key, value) {
            Ok(true) => None,
            Ok(false) => Some(format!("`{key}: {value}` is not the embedded default")),
            Err(e) => Some(e),
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "SECURITY.md, Secure defaults:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_claim_the_defaults_do_not_hold_is_caught() {
    let page = "# S\n## Secure defaults\n- on loopback (`listen.proxy: 0.0.0.0:8080`), `audit.durability:\n  process`, unless `allow_unpinned: true`\n## Next\n`audit.fail_closed: false`\n";
    let claims = claims(page);
    assert_eq!(
        claims,
        [
            ("listen.proxy".to_owned(), "0.0.0.0:8080".to_owned()),
            ("audit.durability".to_owned(), "process".to_owned()),
        ]
    );
    let config = Config::default();
    for (key, value) in &claims {
        assert_eq!(holds(&config, key, value), Ok(false), "{key}");
    }
    assert!(holds(&config, "audit.nonsense", "1").is_err());
    let configuration = "\n### `audit` (*restart*)\n| key | default | meaning |\n|---|---|---|\n| `durability` | `disk` | … |\n\n### `mcp`\n| `mcp.sandbox.mode` | `enforce` | … |\n";
    assert_eq!(
        documented_default(configuration, "audit.durability").as_deref(),
        Some("disk")
    );
    assert_eq!(
        documented_default(configuration, "mcp.sandbox.mode").as_deref(),
        Some("enforce")
    );
    assert_eq!(documented_default(configuration, "audit.nonsense"), None);
}

//! Every path the configuration can name is classified: what a sandboxed server must not read,
//! what it must not write, or why neither. The configuration types of the gateway's sources are
//! read, and each of their path fields must be listed here; each key listed as protected is
//! then set in one configuration and must be among what `protected.rs` lists. A path key added
//! without deciding what it is fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::config::Guard;
use crate::config::load::parse_partial;

/// What a path field of a configuration type is to a sandboxed server.
enum Class {
    /// Must not be read (nor written): at these keys of the configuration below.
    Read(&'static [&'static str]),
    /// Must not be written: at these keys.
    Write(&'static [&'static str]),
    /// A `{file: PATH}` secret source: found wherever it is written, by a walk of the file's
    /// tree (`approvals.factor_key`, below, is one).
    Secret,
    /// Where a reused type that holds paths is used: its fields are classified themselves,
    /// at each of the keys listed for them.
    Via,
    /// Neither, and why.
    Free(&'static str),
}

/// Every path field (`Type.field`) of the configuration, and each use of a type holding paths
/// that more than one field uses (unless its paths are secret sources, found wherever written).
const CLASSIFIED: &[(&str, Class)] = &[
    ("Config.data_dir", Class::Read(&["data_dir"])),
    ("Config.connectors_dir", Class::Write(&["connectors_dir"])),
    ("PolicyConfig.dir", Class::Read(&["policy.dir"])),
    (
        "PolicyConfig.shadow_dir",
        Class::Read(&["policy.shadow_dir"]),
    ),
    (
        "BundleConfig.public_keys",
        Class::Write(&["policy.bundle.public_keys[0]"]),
    ),
    ("AuditConfig.dir", Class::Read(&["audit.dir"])),
    (
        "SigningConfig.key_file",
        Class::Read(&["audit.signing.key_file"]),
    ),
    (
        "WardenIssuerConfig.key_file",
        Class::Read(&["identity.warden_issuer.key_file"]),
    ),
    (
        "PreviousKey.path",
        Class::Read(&[
            "identity.warden_issuer.previous_keys[0]",
            "audit.signing.previous_keys[0]",
        ]),
    ),
    ("WardenIssuerConfig.previous_keys", Class::Via),
    ("SigningConfig.previous_keys", Class::Via),
    (
        "IssuerConfig.ca_file",
        Class::Write(&["identity.issuers[0].ca_file"]),
    ),
    (
        "OperatorIssuer.ca_file",
        Class::Write(&["admin.identity.issuers[0].ca_file"]),
    ),
    (
        "UpstreamConfig.ca_file",
        Class::Write(&["upstream.ca_file"]),
    ),
    ("TracesConfig.ca_file", Class::Write(&["traces.ca_file"])),
    (
        "TlsConfig.cert",
        Class::Write(&[
            "listen.tls.cert",
            "listen.admin_tls.cert",
            "egress.tls.cert",
            "console.tls.cert",
        ]),
    ),
    (
        "TlsConfig.key",
        Class::Read(&[
            "listen.tls.key",
            "listen.admin_tls.key",
            "egress.tls.key",
            "console.tls.key",
        ]),
    ),
    (
        "TlsConfig.client_ca",
        Class::Write(&[
            "listen.tls.client_ca",
            "listen.admin_tls.client_ca",
            "egress.tls.client_ca",
            "console.tls.client_ca",
        ]),
    ),
    ("ListenConfig.tls", Class::Via),
    ("ListenConfig.admin_tls", Class::Via),
    ("EgressConfig.tls", Class::Via),
    ("ConsoleConfig.tls", Class::Via),
    (
        "SplunkConfig.ca_file",
        Class::Write(&["siem.sinks[0].splunk_hec.ca_file"]),
    ),
    (
        "ElasticConfig.ca_file",
        Class::Write(&["siem.sinks[1].elasticsearch.ca_file"]),
    ),
    (
        "SyslogTls.ca_file",
        Class::Write(&["siem.sinks[2].syslog.tls.ca_file"]),
    ),
    ("VaultConfig.ca_cert", Class::Write(&["vault.ca_cert"])),
    (
        "VaultAuth.jwt_path",
        Class::Read(&["vault.auth.kubernetes.jwt_path"]),
    ),
    ("BootstrapSecret.File", Class::Secret),
    ("CredentialSource.File", Class::Secret),
    (
        "InterceptConfig.ca_key",
        Class::Read(&["egress.intercept.ca_key"]),
    ),
    (
        "InterceptConfig.ca_cert",
        Class::Write(&["egress.intercept.ca_cert"]),
    ),
    (
        "InterceptConfig.upstream_ca_file",
        Class::Write(&["egress.intercept.upstream_ca_file"]),
    ),
    ("StateConfig.sqlite", Class::Read(&["state.sqlite"])),
    (
        "PostgresTls.ca_file",
        Class::Write(&["state.postgres.tls.ca_file"]),
    ),
    ("BudgetsConfig.prices", Class::Write(&["budgets.prices"])),
    (
        "RawBudgets.prices",
        Class::Free("the form `budgets` is read in, as BudgetsConfig.prices"),
    ),
    (
        "ServerConfig.cwd",
        Class::Free("a server's working directory, which it reads only when it may"),
    ),
    (
        "ServerSandbox.read",
        Class::Free("what a server may reach, checked against all of the above"),
    ),
    (
        "ServerSandbox.write",
        Class::Free("what a server may reach, checked against all of the above"),
    ),
];

#[test]
fn every_path_the_configuration_names_is_classified() {
    let found = path_fields(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let listed: BTreeSet<String> = CLASSIFIED.iter().map(|(f, _)| (*f).to_owned()).collect();
    let missing: Vec<_> = found.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "path fields of the configuration that protected.rs does not classify (list each in \
         CLASSIFIED, and in protected.rs when a sandboxed server must not read or write it): \
         {missing:?}"
    );
    for (field, class) in CLASSIFIED {
        if let Class::Free(why) = class {
            assert!(!why.is_empty(), "{field}: say why it needs no protection");
        }
    }
    let gone: Vec<_> = listed.difference(&found).collect();
    assert!(gone.is_empty(), "classified but not found: {gone:?}");
}

#[test]
fn every_protected_key_is_protected() {
    let root = tempfile::tempdir().unwrap();
    let m = |key: &str| root.path().join("m").join(key).display().to_string();
    // The price table is read with the configuration.
    std::fs::create_dir_all(root.path().join("m")).unwrap();
    std::fs::write(
        m("budgets.prices"),
        "openai: {gpt-4.1: {input: 2, output: 8}}\n",
    )
    .unwrap();
    let tls = |at: &str| {
        format!(
            "{{cert: '{}', key: '{}', client_ca: '{}'}}",
            m(&format!("{at}.cert")),
            m(&format!("{at}.key")),
            m(&format!("{at}.client_ca"))
        )
    };
    let yaml = format!(
        "data_dir: '{data_dir}'
connectors_dir: '{connectors_dir}'
policy: {{dir: '{policy_dir}', shadow_dir: '{shadow}', bundle: {{public_keys: ['{bundle}']}}}}
audit: {{dir: '{audit_dir}', signing: {{key_file: '{audit_key}', previous_keys: ['{audit_prev}']}}}}
identity:
  warden_issuer: {{key_file: '{token_key}', previous_keys: ['{token_prev}']}}
  issuers: [{{issuer: 'https://idp.example', audiences: [warden], ca_file: '{issuer_ca}'}}]
admin: {{identity: {{issuers: [{{issuer: 'https://op.example', audiences: [warden], ca_file: '{op_ca}'}}]}}}}
upstream: {{ca_file: '{upstream_ca}'}}
traces: {{endpoint: 'http://127.0.0.1:4318', ca_file: '{traces_ca}'}}
listen: {{tls: {listen_tls}, admin_tls: {admin_tls}}}
egress: {{tls: {egress_tls}, intercept: {{ca_cert: '{icert}', ca_key: '{ikey}', upstream_ca_file: '{iup}'}}}}
console: {{tls: {console_tls}}}
siem:
  sinks:
    - {{name: a, splunk_hec: {{url: 'https://s.example', token: {{env: T}}, ca_file: '{splunk}'}}}}
    - {{name: b, elasticsearch: {{url: 'https://e.example', ca_file: '{elastic}'}}}}
    - {{name: c, syslog: {{address: 's.example:6514', tls: {{ca_file: '{syslog}'}}}}}}
vault: {{address: 'https://vault.example:8200', ca_cert: '{vault_ca}', auth: {{method: kubernetes, role: warden, jwt_path: '{jwt}'}}}}
state: {{sqlite: '{sqlite}', postgres: {{url: {{env: U}}, tls: {{ca_file: '{pg_ca}'}}}}}}
budgets: {{prices: '{prices}'}}
approvals: {{factor_key: {{file: '{factor}'}}}}
",
        data_dir = m("data_dir"),
        connectors_dir = m("connectors_dir"),
        policy_dir = m("policy.dir"),
        shadow = m("policy.shadow_dir"),
        bundle = m("policy.bundle.public_keys[0]"),
        audit_dir = m("audit.dir"),
        audit_key = m("audit.signing.key_file"),
        audit_prev = m("audit.signing.previous_keys[0]"),
        token_key = m("identity.warden_issuer.key_file"),
        token_prev = m("identity.warden_issuer.previous_keys[0]"),
        issuer_ca = m("identity.issuers[0].ca_file"),
        op_ca = m("admin.identity.issuers[0].ca_file"),
        upstream_ca = m("upstream.ca_file"),
        traces_ca = m("traces.ca_file"),
        listen_tls = tls("listen.tls"),
        admin_tls = tls("listen.admin_tls"),
        egress_tls = tls("egress.tls"),
        console_tls = tls("console.tls"),
        icert = m("egress.intercept.ca_cert"),
        ikey = m("egress.intercept.ca_key"),
        iup = m("egress.intercept.upstream_ca_file"),
        splunk = m("siem.sinks[0].splunk_hec.ca_file"),
        elastic = m("siem.sinks[1].elasticsearch.ca_file"),
        syslog = m("siem.sinks[2].syslog.tls.ca_file"),
        vault_ca = m("vault.ca_cert"),
        jwt = m("vault.auth.kubernetes.jwt_path"),
        sqlite = m("state.sqlite"),
        pg_ca = m("state.postgres.tls.ca_file"),
        prices = m("budgets.prices"),
        factor = m("approvals.factor_key"),
    );
    let parsed = parse_partial(&yaml, Some(&root.path().join("warden.yaml")));
    let protected = &parsed.config.mcp.sandbox.protected;
    let guards: BTreeMap<String, Guard> = protected
        .iter()
        .map(|p| (p.path.display().to_string(), p.guard))
        .collect();
    let errors: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    let mut checked = 0;
    for (field, class) in CLASSIFIED {
        let (keys, guard): (&[&str], Guard) = match class {
            Class::Read(keys) => (keys, Guard::Read),
            Class::Write(keys) => (keys, Guard::Write),
            Class::Secret | Class::Via | Class::Free(_) => continue,
        };
        for key in keys {
            assert_eq!(
                guards.get(&m(key)),
                Some(&guard),
                "{key} ({field}) is not protected from being {}; the configuration's \
                 mistakes: {errors:?}",
                if guard == Guard::Read {
                    "read"
                } else {
                    "written"
                },
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 37);
    assert_eq!(
        guards.get(&m("approvals.factor_key")),
        Some(&Guard::Read),
        "{errors:?}"
    );
}

/// `Type.field` (or `Type.Variant`) for every path of every configuration type (one that is
/// deserialized) in the sources under `src`, and for each field whose type is one such type
/// holding paths that more than one field uses (unless all its paths are secret sources).
fn path_fields(src: &Path) -> BTreeSet<String> {
    let mut types: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for text in sources(src) {
        // Not the tests' own types.
        let all: Vec<&str> = text.lines().collect();
        let end = all
            .windows(2)
            .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod ") && w[1].ends_with('{'))
            .unwrap_or(all.len());
        let lines = &all[..end];
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = type_name(line) else {
                continue;
            };
            let attributes = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let l = l.trim();
                    l.starts_with('#') || l.starts_with("///") || l.starts_with(')')
                })
                .any(|l| l.contains("Deserialize"));
            if !attributes && !text.contains(&format!("Deserialize<'de> for {name}")) {
                continue;
            }
            let fields = lines[i + 1..]
                .iter()
                .take_while(|l| **l != "}")
                .filter_map(|l| field(l))
                .collect();
            types.insert(name, fields);
        }
    }
    let direct: BTreeMap<&str, Vec<&str>> = types
        .iter()
        .map(|(name, fields)| {
            let paths = fields
                .iter()
                .filter(|(_, ty)| ty.contains("PathBuf"))
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>();
            (name.as_str(), paths)
        })
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    let mut out: BTreeSet<String> = direct
        .iter()
        .flat_map(|(name, paths)| paths.iter().map(move |f| format!("{name}.{f}")))
        .collect();
    let secret = |name: &str| {
        CLASSIFIED.iter().any(|(f, c)| {
            f.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.'))
                && matches!(c, Class::Secret)
        })
    };
    for held in direct.keys().filter(|n| !secret(n)) {
        let uses: Vec<String> = types
            .iter()
            .flat_map(|(name, fields)| {
                fields
                    .iter()
                    .filter(|(_, ty)| names(ty).any(|w| w == *held))
                    .map(move |(f, _)| format!("{name}.{f}"))
            })
            .collect();
        if uses.len() > 1 {
            out.extend(uses);
        }
    }
    out
}

/// The name of the struct or enum a line opens.
fn type_name(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("pub ")
        .or_else(|| line.strip_prefix("pub(crate) "))
        .unwrap_or(line);
    let rest = rest
        .strip_prefix("struct ")
        .or_else(|| rest.strip_prefix("enum "))?;
    rest.trim_end().ends_with('{').then(|| {
        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

/// `(name, type)` of the field (or tuple variant) a line declares.
fn field(line: &str) -> Option<(String, String)> {
    let l = line.trim();
    if l.starts_with("//") || l.starts_with('#') {
        return None;
    }
    let l = l
        .strip_prefix("pub ")
        .or_else(|| l.strip_prefix("pub(crate) "))
        .unwrap_or(l);
    let at = l.find([':', '('])?;
    let name = &l[..at];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_owned(), l[at + 1..].to_owned()))
}

/// The words of a type.
fn names(ty: &str) -> impl Iterator<Item = &str> {
    ty.split(|c: char| !c.is_alphanumeric() && c != '_')
}

/// The text of every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

//! What a new user copies from the README and docs/ works: the configurations of the README's
//! first request and of tools.md's "Try it" load, the MCP servers the docs pin are the versions
//! this suite runs, and every relative link leads to a file and heading that exist.
//! (SECURITY.md's secure defaults are checked against docs/configuration.md and the embedded
//! defaults by the gateway's unit test, `gateway/src/config/secure_defaults.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_e2e::paths::{repo_root, warden_bin};
use warden_e2e::warden::run_bounded;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README, SECURITY.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs = vec![root.join("README.md"), root.join("SECURITY.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    docs
}

/// The text of `doc` outside fenced code blocks.
fn prose(doc: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchors for the headings of `doc`: lower case, spaces to `-`, punctuation dropped,
/// a repeated one numbered `-1`, `-2`.
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(doc).lines() {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let slug: String = title
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The relative link targets of `doc` (`[text](target)`), outside code blocks.
fn relative_links(doc: &str) -> Vec<String> {
    let text = prose(doc);
    let mut links = Vec::new();
    for (at, _) in text.match_indices("](") {
        let rest = &text[at + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        links.push(target.to_owned());
    }
    links
}

#[test]
fn every_relative_link_in_the_docs_leads_to_a_file_and_heading() {
    let mut headings: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut dead = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for target in relative_links(&text) {
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let Ok(file) = file.canonicalize() else {
                dead.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            };
            if anchor.is_empty() || file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let known = headings
                .entry(file.clone())
                .or_insert_with(|| anchors(&read(&file)));
            if !known.contains(anchor) {
                dead.push(format!("{}: {target}: no such heading", doc.display()));
            }
        }
    }
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn the_link_check_sees_a_dead_anchor() {
    let doc = "# Deploying with Helm\n## Install in five commands\n";
    let known = anchors(doc);
    assert!(known.contains("install-in-five-commands"), "{known:?}");
    assert!(!known.contains("policies"));
    assert_eq!(
        relative_links("see [deploy](deploy.md#policies), [x](https://a.example)"),
        ["deploy.md#policies"]
    );
}

/// Every `@modelcontextprotocol/<package>@<version>` the docs tell users to run, of a package
/// tests/mcp installs, is the version this suite runs: an older release may not work with the clients the
/// suite checks (server-filesystem 2025.8.21, fetched today, lists its tools with input schemas
/// that have no `type`, which the official MCP Python SDK refuses).
#[test]
fn the_mcp_servers_the_docs_pin_are_the_tested_versions() {
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&repo_root().join("tests/mcp/package.json"))).unwrap();
    let tested = manifest["dependencies"].as_object().unwrap();
    let mut pins = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for (at, _) in text.match_indices("@modelcontextprotocol/") {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "@/.-_".contains(c)))
                .unwrap_or(rest.len());
            let spec = rest[..end].trim_end_matches('.');
            // `@scope/name@version`: the version follows the second `@`.
            let Some((package, version)) = spec[1..].split_once('@') else {
                continue;
            };
            let package = format!("@{package}");
            pins += 1;
            match tested.get(&package).and_then(|v| v.as_str()) {
                Some(v) if v == version => {}
                Some(v) => wrong.push(format!(
                    "{}: {package}@{version}, but tests/mcp runs {v}",
                    doc.display()
                )),
                None => {}
            }
        }
    }
    assert!(pins > 0, "the docs pin no MCP server version any more");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The fenced blocks of `doc` after the line holding `marker`, up to the next heading, without
/// their fences.
fn blocks_after(doc: &str, marker: &str) -> Vec<String> {
    let from = doc
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the document"));
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in doc[from..].lines().skip(1) {
        match &mut block {
            None if line.starts_with('#') => break,
            None if line.starts_with("```") => block = Some(String::new()),
            None => {}
            Some(_) if line.starts_with("```") => blocks.extend(block.take()),
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(!blocks.is_empty(), "no fenced block after {marker:?}");
    blocks
}

/// The README's `warden.yaml` for the fake upstream, then tools.md's "Try it" MCP section added
/// to it as that page says ("beside the routes"), and approvals.md's command-line and console
/// sections added to that, each checked with `warden check` next to a copy of the repository's
/// policies, as a user runs them.
#[tokio::test]
async fn the_readme_and_try_it_configurations_load() {
    let root = repo_root();
    let readme = read(&root.join("README.md"));
    let shell = blocks_after(&readme, "No provider key at hand?").remove(0);
    let start = shell
        .find("<<'YAML'\n")
        .expect("the README writes warden.yaml with a here-document");
    let routes = &shell[start + "<<'YAML'\n".len()..];
    let routes = &routes[..routes.find("\nYAML").expect("the here-document's end") + 1];

    let tools = read(&root.join("docs/tools.md"));
    let try_it = blocks_after(&tools, "### Try it").remove(0);
    assert!(
        try_it.starts_with("# warden.yaml, beside the routes"),
        "{try_it}"
    );

    let approvals_md = read(&root.join("docs/approvals.md"));
    let approvals = blocks_after(&approvals_md, "### Try it").remove(0);
    assert!(
        approvals.starts_with("# warden.yaml, beside the routes"),
        "{approvals}"
    );
    let console = blocks_after(&approvals_md, "### A first approval in the console")
        .into_iter()
        .find(|b| b.starts_with("# warden.yaml"))
        .expect("the console's first approval has a warden.yaml block");

    for (name, config) in [
        ("README", routes.to_owned()),
        ("tools.md Try it", format!("{routes}{try_it}")),
        (
            "approvals.md Try it",
            format!("{routes}{try_it}{approvals}"),
        ),
        (
            "approvals.md's first approval in the console",
            format!("{routes}{try_it}{console}"),
        ),
    ] {
        // An enforced sandbox is refused at load on a kernel without Landlock ABI 6: where
        // the sandbox tests are told to skip (WARDEN_TEST_ALLOW_NO_LANDLOCK=1), the local
        // servers are checked under best_effort instead.
        let config = if std::env::var("WARDEN_TEST_ALLOW_NO_LANDLOCK").as_deref() == Ok("1") {
            config.replacen("\nmcp:\n", "\nmcp:\n  sandbox: { mode: best_effort }\n", 1)
        } else {
            config
        };
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&root.join("policies"), &dir.path().join("policies"));
        std::fs::write(dir.path().join("warden.yaml"), &config).unwrap();
        let mut cmd = tokio::process::Command::new(warden_bin());
        cmd.current_dir(dir.path())
            .args(["check", "--config", "warden.yaml"])
            .env_remove("WARDEN_CONFIG")
            .env("OPENAI_API_KEY", "fake");
        succeeds(cmd, &format!("{name}'s configuration:\n{config}")).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The policies approvals.md's Try it has a user add (an approval, and the `approval:decide`
/// permit its operators need) keep the shipped decision tests passing: the baseline's own case
/// for `approval:decide` must not be one they break.
#[tokio::test]
async fn the_approvals_try_it_policies_keep_the_shipped_tests_passing() {
    let root = repo_root();
    let approvals = read(&root.join("docs/approvals.md"));
    let blocks = blocks_after(&approvals, "### Try it");
    let cedar = blocks
        .iter()
        .find(|b| b.contains("approval:decide"))
        .expect("approvals.md's Try it has an approval:decide permit");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&root.join("policies"), &policies);
    std::fs::write(policies.join("approvals.cedar"), cedar).unwrap();
    let mut cmd = tokio::process::Command::new(warden_bin());
    cmd.args(["policy", "test"]).arg(&policies);
    succeeds(cmd, &format!("with approvals.md's policies:\n{cedar}")).await;
}

/// Runs `cmd` (a minute at most) and fails with `what`, its output and errors unless it succeeds.
async fn succeeds(cmd: tokio::process::Command, what: &str) {
    let out = run_bounded(cmd, Duration::from_secs(60)).await.unwrap();
    assert!(
        out.status.success(),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

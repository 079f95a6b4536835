//! `warden policy test DIR`: decision cases in `DIR/tests/*.yaml` run against the policies in
//! `DIR`. The format is described in `docs/policy-guide.md`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{EvaluationFailure, PolicyEngine, PolicyErrors};
use crate::action::{
    Action, ActionContext, Facts, Findings, LlmFacts, Principal, PrincipalKind, Resource, Verb,
};
use crate::decision::Decision;

/// Default arrival time of a case: Monday 2026-11-02 10:00:00 UTC.
const DEFAULT_TIME: u64 = 1_793_613_600;
/// Default source address of a case.
const DEFAULT_SOURCE_IP: &str = "10.0.0.10";
/// Default issuer of a case's principal.
const DEFAULT_ISSUER: &str = "https://idp.example.com";

/// The actions cases can name so far.
const CASE_VERBS: [Verb; 3] = [Verb::LlmChat, Verb::LlmEmbed, Verb::LlmModels];

/// Why the tests could not run at all (as opposed to cases that failed).
#[derive(Debug, thiserror::Error)]
pub enum PolicyTestError {
    /// The policy directory does not load.
    #[error("the policies do not load; fix these first:\n{0}")]
    Policies(PolicyErrors),
    /// No `*.yaml` case files were found.
    #[error("no test files: write decision cases in {0}/*.yaml (see docs/policy-guide.md)")]
    NoTests(PathBuf),
    /// Case files that cannot be read, parsed or understood.
    #[error("{}", lines(.0))]
    BadTestFiles(Vec<TestFileError>),
}

fn lines(errors: &[TestFileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem in a case file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFileError {
    /// The case file.
    pub file: PathBuf,
    /// `(line, column)`, 1-based, when known.
    pub position: Option<(u64, u64)>,
    /// What is wrong and how to write it.
    pub message: String,
}

impl fmt::Display for TestFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The decision a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `approval_required`
    ApprovalRequired,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::ApprovalRequired => "approval_required",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    cases: Vec<Spanned<Case>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    #[serde(default)]
    context: ContextSpec,
    expect: Expect,
    /// Expected determining policy ids (order does not matter).
    policies: Option<Vec<String>>,
    /// Texts that must each appear in one of the decision's reasons.
    reasons: Option<Vec<String>>,
    /// Expected approvers of an `approval_required` decision.
    approvers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindSpec {
    #[default]
    Agent,
    User,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    id: String,
    #[serde(default)]
    kind: KindSpec,
    issuer: Option<String>,
    fleet: Option<String>,
    owner: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    provider: String,
    model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextSpec {
    route: Option<String>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u64>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    input_tokens: u64,
    time: Option<TimeSpec>,
    source_ip: Option<String>,
    tls: Option<bool>,
}

/// Unix seconds or an RFC 3339 timestamp (`2026-11-02T10:00:00Z`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeSpec {
    Unix(u64),
    Rfc3339(String),
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case file.
    pub file: PathBuf,
    /// Line of the case in its file.
    pub line: u64,
    /// The case's `name`.
    pub name: String,
    /// The decision it expected.
    pub expected: Expect,
    /// The decision the policies gave.
    pub actual: Decision,
    /// Policies that failed to evaluate during the case.
    pub errors: Vec<EvaluationFailure>,
    /// Each way the actual decision differs from the expectation; empty when the case passed.
    pub mismatches: Vec<String>,
}

impl CaseOutcome {
    /// The decision matched every expectation.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Per-case results of `warden policy test`.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Every case, in file and case order.
    pub cases: Vec<CaseOutcome>,
}

impl TestReport {
    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed()).count()
    }

    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.len() - self.failed()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut file: Option<&Path> = None;
        for case in &self.cases {
            if file != Some(case.file.as_path()) {
                file = Some(case.file.as_path());
                writeln!(f, "{}", case.file.display())?;
            }
            if case.passed() {
                writeln!(f, "  ok    {}", case.name)?;
                continue;
            }
            writeln!(
                f,
                "  FAIL  {} ({}:{})",
                case.name,
                case.file.display(),
                case.line
            )?;
            writeln!(f, "        expected: {}", case.expected.label())?;
            writeln!(f, "        actual:   {}", describe(&case.actual))?;
            for m in &case.mismatches {
                writeln!(f, "        - {m}")?;
            }
            for e in &case.errors {
                writeln!(
                    f,
                    "        evaluation error in `{}`: {}",
                    e.policy, e.message
                )?;
            }
        }
        write!(
            f,
            "{} cases: {} passed, {} failed",
            self.cases.len(),
            self.passed(),
            self.failed()
        )
    }
}

/// `allow by [a, b]`, `deny by [x]: reason; reason`, `approval_required by p (approvers: ...)`.
fn describe(d: &Decision) -> String {
    let ids = |p: &[Arc<str>]| p.iter().map(|s| &**s).collect::<Vec<_>>().join(", ");
    match d {
        Decision::Allow { policies } => format!("allow by [{}]", ids(policies)),
        Decision::Deny { reasons, policies } => {
            format!("deny by [{}]: {}", ids(policies), reasons.join("; "))
        }
        Decision::NeedsApproval {
            policy,
            approvers,
            reason,
        } => format!(
            "approval_required by {policy} (approvers: {}){}",
            approvers.join(", "),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

/// Loads the policies in `dir` and runs every case in `dir/tests/*.yaml` (and `*.yml`).
pub fn run_tests(dir: &Path) -> Result<TestReport, PolicyTestError> {
    let engine = PolicyEngine::load(dir).map_err(PolicyTestError::Policies)?;
    let tests_dir = dir.join("tests");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&tests_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(PolicyTestError::BadTestFiles(vec![TestFileError {
                file: tests_dir,
                position: None,
                message: format!("cannot read the directory: {e}"),
            }]));
        }
    };
    if files.is_empty() {
        return Err(PolicyTestError::NoTests(tests_dir));
    }
    files.sort();
    let mut errors = Vec::new();
    let mut prepared = Vec::new();
    for file in files {
        match read_cases(&file) {
            Ok(cases) => prepared.extend(cases),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyTestError::BadTestFiles(errors));
    }
    let cases = prepared.into_iter().map(|p| run_case(&engine, p)).collect();
    Ok(TestReport { cases })
}

/// A case turned into an [`Action`], ready to run.
struct Prepared {
    file: PathBuf,
    line: u64,
    case: Case,
    action: Action,
}

fn read_cases(file: &Path) -> Result<Vec<Prepared>, Vec<TestFileError>> {
    let err = |position, message| TestFileError {
        file: file.to_path_buf(),
        position,
        message,
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![err(None, format!("cannot read: {e}"))])?;
    let parsed: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let position = e.location().map(|l| (l.line(), l.column()));
        let message = e.without_snippet().to_string().replace('\n', " ");
        vec![err(position, strip_position_suffix(&message).to_owned())]
    })?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for spanned in parsed.cases {
        let position = (spanned.referenced.line(), spanned.referenced.column());
        let case = spanned.value;
        match to_action(&case) {
            Ok(action) => out.push(Prepared {
                file: file.to_path_buf(),
                line: position.0,
                case,
                action,
            }),
            Err(message) => errors.push(err(
                Some(position),
                format!("case `{}`: {message}", case.name),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `unknown variant ... at line 6, column 13` → `unknown variant ...` (the position is printed
/// in front already).
fn strip_position_suffix(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i)
            if message[i + 9..]
                .split(", column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &message[..i]
        }
        _ => message,
    }
}

fn to_action(case: &Case) -> Result<Action, String> {
    let verb = CASE_VERBS
        .into_iter()
        .find(|v| v.as_str() == case.action)
        .ok_or_else(|| {
            let known: Vec<&str> = CASE_VERBS.iter().map(|v| v.as_str()).collect();
            format!(
                "unknown action `{}`; use one of {}",
                case.action,
                known.join(", ")
            )
        })?;
    let r = &case.resource;
    let resource = match (verb.clone(), &r.model) {
        (Verb::LlmChat | Verb::LlmEmbed, Some(model)) => Resource::Model {
            provider: Arc::from(r.provider.as_str()),
            name: model.clone(),
        },
        (Verb::LlmChat | Verb::LlmEmbed, None) => {
            return Err(format!(
                "{verb} acts on a model: write resource: {{ provider: ..., model: ... }}"
            ));
        }
        (Verb::LlmModels, None) => Resource::Provider {
            name: Arc::from(r.provider.as_str()),
        },
        (Verb::LlmModels, Some(_)) => {
            return Err(format!(
                "{verb} acts on a provider: write resource: {{ provider: ... }} without model"
            ));
        }
        (other, _) => return Err(format!("{other} cannot be tested here yet")),
    };
    let p = &case.principal;
    let opt = |s: &Option<String>| s.as_deref().map(Arc::from);
    let principal = Principal {
        kind: match p.kind {
            KindSpec::Agent => PrincipalKind::Agent,
            KindSpec::User => PrincipalKind::User,
        },
        id: Arc::from(p.id.as_str()),
        issuer: Arc::from(p.issuer.as_deref().unwrap_or(DEFAULT_ISSUER)),
        fleet: opt(&p.fleet),
        owner: opt(&p.owner),
        environment: opt(&p.environment),
        scopes: p.scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
        groups: p.groups.iter().map(|s| Arc::from(s.as_str())).collect(),
        client_certificate: None,
        expires_at: None,
    };
    let c = &case.context;
    let source_ip: IpAddr = c
        .source_ip
        .as_deref()
        .unwrap_or(DEFAULT_SOURCE_IP)
        .parse()
        .map_err(|_| {
            format!(
                "context.source_ip `{}` is not an IP address",
                c.source_ip.as_deref().unwrap_or_default()
            )
        })?;
    let time = match &c.time {
        None => UNIX_EPOCH + Duration::from_secs(DEFAULT_TIME),
        Some(TimeSpec::Unix(secs)) => UNIX_EPOCH + Duration::from_secs(*secs),
        Some(TimeSpec::Rfc3339(s)) => parse_time(s)?,
    };
    Ok(Action {
        principal: Arc::new(principal),
        verb,
        resource,
        context: ActionContext {
            route: Arc::from(c.route.as_deref().unwrap_or("test")),
            time,
            source_ip,
            tls: c.tls.unwrap_or(true),
            client_certificate: None,
            findings: Findings::none(),
            facts: Facts::Llm(LlmFacts {
                stream: c.stream,
                max_tokens: c.max_tokens,
                tools: c.tools.clone(),
                input_tokens: c.input_tokens,
            }),
        },
    })
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s).map_err(|e| {
        format!(
            "context.time `{s}` is neither unix seconds nor RFC 3339 (2026-11-02T10:00:00Z): {e}"
        )
    })
}

fn run_case(engine: &PolicyEngine, p: Prepared) -> CaseOutcome {
    let verdict = engine.evaluate(&p.action);
    let case = &p.case;
    let actual = &verdict.decision;
    let mut mismatches = Vec::new();
    if actual.label() != case.expect.label() {
        mismatches.push(format!(
            "decision is {}, not {}",
            actual.label(),
            case.expect.label()
        ));
    }
    if let Some(expected) = &case.policies {
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        let ids = actual.policy_ids();
        let mut got: Vec<&str> = ids.iter().map(|s| &**s).collect();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            mismatches.push(format!(
                "determining policies are [{}], expected [{}]",
                got.join(", "),
                want.join(", ")
            ));
        }
    }
    if let Some(expected) = &case.reasons {
        let reasons: Vec<&str> = match actual {
            Decision::Deny { reasons, .. } => reasons.iter().map(String::as_str).collect(),
            Decision::NeedsApproval { reason, .. } => reason.iter().map(String::as_str).collect(),
            Decision::Allow { .. } => Vec::new(),
        };
        for want in expected {
            if !reasons.iter().any(|r| r.contains(want.as_str())) {
                mismatches.push(format!("no reason contains \"{want}\""));
            }
        }
    }
    if let Some(expected) = &case.approvers {
        let got = match actual {
            Decision::NeedsApproval { approvers, .. } => approvers.as_slice(),
            _ => &[],
        };
        if got != expected.as_slice() {
            mismatches.push(format!(
                "approvers are [{}], expected [{}]",
                got.join(", "),
                expected.join(", ")
            ));
        }
    }
    CaseOutcome {
        file: p.file,
        line: p.line,
        name: p.case.name,
        expected: p.case.expect,
        actual: verdict.decision,
        errors: verdict.errors,
        mismatches,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_position_suffix;

    #[test]
    fn strips_the_position_the_yaml_parser_appends() {
        assert_eq!(
            strip_position_suffix("unknown variant `allw` at line 6, column 13"),
            "unknown variant `allw`"
        );
        assert_eq!(
            strip_position_suffix("seen at line one"),
            "seen at line one"
        );
    }
}

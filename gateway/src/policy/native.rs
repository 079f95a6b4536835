//! Context conditions compiled to native code.
//!
//! Most guardrails read only the request context: `context.input_tokens > 200000`,
//! `context has max_tokens && context.max_tokens > 32768`, `context.tools.contains("exec")`,
//! `context.weekday < 5 && context.hour >= 8`. Judging one through Cedar means building a
//! Cedar context and request for every call, which costs several times the comparison
//! itself. A policy whose conditions use only the part of Cedar below is compiled, at load,
//! into a small tree evaluated straight on the typed [`ActionContext`]:
//!
//! - literals (booleans, longs, strings) and sets of literals;
//! - `context.<attribute>` and `context has <attribute>` for Warden's context attributes,
//!   except `source_ip` and `addresses` (extension values), `fields` (a record) and
//!   `arguments` (a tool call's arguments, typed per tool: converted only for Cedar); `tools`
//!   and `findings` are sets of strings, `max_tokens`, `client_certificate` and `sni`
//!   optional;
//! - the fleet facts' fields, `context.session.<field>` and `context.budget.<field>`, and
//!   `context has session`, `context has budget` (also as `context has session.<field>`):
//!   read straight from the session's and budget's facts, the records never built;
//! - `!`, `&&`, `||` (short-circuiting as Cedar does), `if … then … else …`;
//! - `==`, `!=`, `<`, `<=`, `>`, `>=`, checked `+`, `-`, `*` and unary `-` on longs;
//! - `.contains`, `.containsAll`, `.containsAny`, `.isEmpty()` on sets.
//!
//! Anything else (principal or resource attributes, `in`, `is`, `like`, extension functions)
//! leaves the policy to Cedar. Evaluation follows Cedar's semantics; where Cedar would raise
//! an error (a missing attribute read without `has`, a type mismatch, an overflow), the
//! compiled form gives up and the caller asks Cedar, so errors read exactly as Cedar words
//! them. The tests compare both on every operator and many contexts.

use std::sync::Arc;

use cedar_policy::pst::{BinaryOp, Clause, Expr, Literal, UnaryOp, Var};

use super::context_keys::Key;
use super::records::{Field, FieldValue};
use super::request::TimeFacts;
use crate::action::{
    ActionContext, AnswerFacts, EgressFacts, ElicitFacts, Facts, Finding, HttpFacts, LlmFacts,
    ProposeFacts, SampleFacts,
};

/// A policy's conditions, compiled: true exactly when the policy holds.
#[derive(Debug)]
pub(crate) struct NativeCondition(Node);

/// Cedar would raise an error here (or the conditions are not boolean): ask Cedar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AskCedar;

impl NativeCondition {
    /// Compiles the conjunction of `clauses` in their order (`when` as is, `unless`
    /// negated), as Cedar combines them; `None` if any part is outside the compiled subset.
    pub(crate) fn compile(clauses: &[Clause]) -> Option<NativeCondition> {
        let mut parts = clauses.iter().map(|clause| match clause {
            Clause::When(e) => compile(e),
            Clause::Unless(e) => Some(Node::Not(Box::new(compile(e)?))),
        });
        let mut node = parts.next()??;
        for part in parts {
            node = Node::And(Box::new(node), Box::new(part?));
        }
        Some(NativeCondition(node))
    }

    /// Whether the policy holds for `ctx`.
    pub(crate) fn holds(&self, ctx: &ActionContext) -> Result<bool, AskCedar> {
        let mut env = Env { ctx, time: None };
        match self.0.eval(&mut env)? {
            Value::Bool(b) => Ok(b),
            _ => Err(AskCedar),
        }
    }
}

/// Whether the compiled form reads `key` whole: every attribute but the extension values,
/// the records and a tool call's arguments, which stay with Cedar.
fn compiled(key: Key) -> Option<Key> {
    (!matches!(
        key,
        Key::SourceIp | Key::Addresses | Key::Fields | Key::Arguments | Key::Session | Key::Budget
    ))
    .then_some(key)
}

/// Whether the compiled form tests `context has <key>`: those it reads, and the fleet facts'
/// records (whose fields it reads one by one).
fn compiled_has(key: Key) -> Option<Key> {
    compiled(key).or_else(|| matches!(key, Key::Session | Key::Budget).then_some(key))
}

#[derive(Debug, Clone, Copy)]
enum Compare {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Debug, Clone, Copy)]
enum SetOp {
    Contains,
    ContainsAll,
    ContainsAny,
}

/// A literal set element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    Bool(bool),
    Long(i64),
    Str(Arc<str>),
}

#[derive(Debug)]
enum Node {
    Bool(bool),
    Long(i64),
    Str(Arc<str>),
    /// Elements deduplicated, as in a Cedar set.
    Set(Vec<Elem>),
    Get(Key),
    /// A field of `context.session` or `context.budget`.
    Field(Field),
    Has(Key),
    Not(Box<Node>),
    Neg(Box<Node>),
    IsEmpty(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Eq(Box<Node>, Box<Node>),
    NotEq(Box<Node>, Box<Node>),
    Compare(Compare, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    SetTest(SetOp, Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
}

fn compile(expr: &Expr) -> Option<Node> {
    let pair = |l: &Expr, r: &Expr| Some((Box::new(compile(l)?), Box::new(compile(r)?)));
    Some(match expr {
        Expr::Literal(Literal::Bool(b)) => Node::Bool(*b),
        Expr::Literal(Literal::Long(n)) => Node::Long(*n),
        Expr::Literal(Literal::String(s)) => Node::Str(Arc::from(s.as_str())),
        Expr::Set(items) => {
            let mut elems: Vec<Elem> = Vec::with_capacity(items.len());
            for item in items {
                let elem = match &**item {
                    Expr::Literal(Literal::Bool(b)) => Elem::Bool(*b),
                    Expr::Literal(Literal::Long(n)) => Elem::Long(*n),
                    Expr::Literal(Literal::String(s)) => Elem::Str(Arc::from(s.as_str())),
                    _ => return None,
                };
                if !elems.contains(&elem) {
                    elems.push(elem);
                }
            }
            Node::Set(elems)
        }
        Expr::GetAttr { expr, attr } if matches!(&**expr, Expr::Var(Var::Context)) => {
            Node::Get(compiled(Key::named(attr)?)?)
        }
        Expr::GetAttr { expr, attr } => Node::Field(Field::of(record(expr)?, attr)?),
        Expr::HasAttr { expr, attrs } if matches!(&**expr, Expr::Var(Var::Context)) => {
            let key = compiled_has(Key::named(&attrs.head)?)?;
            // `context has session.read_private`: the record has every field of its type.
            match attrs.tail.as_slice() {
                [] => Node::Has(key),
                [field] => {
                    Field::of(key, field.as_str())?;
                    Node::Has(key)
                }
                _ => return None,
            }
        }
        Expr::UnaryOp { op, expr } => {
            let inner = Box::new(compile(expr)?);
            match op {
                UnaryOp::Not => Node::Not(inner),
                UnaryOp::Neg => Node::Neg(inner),
                UnaryOp::IsEmpty => Node::IsEmpty(inner),
                _ => return None,
            }
        }
        Expr::BinaryOp { op, left, right } => {
            let (l, r) = pair(left, right)?;
            match op {
                BinaryOp::And => Node::And(l, r),
                BinaryOp::Or => Node::Or(l, r),
                BinaryOp::Eq => Node::Eq(l, r),
                BinaryOp::NotEq => Node::NotEq(l, r),
                BinaryOp::Less => Node::Compare(Compare::Less, l, r),
                BinaryOp::LessEq => Node::Compare(Compare::LessEq, l, r),
                BinaryOp::Greater => Node::Compare(Compare::Greater, l, r),
                BinaryOp::GreaterEq => Node::Compare(Compare::GreaterEq, l, r),
                BinaryOp::Add => Node::Arith(Arith::Add, l, r),
                BinaryOp::Sub => Node::Arith(Arith::Sub, l, r),
                BinaryOp::Mul => Node::Arith(Arith::Mul, l, r),
                BinaryOp::Contains => Node::SetTest(SetOp::Contains, l, r),
                BinaryOp::ContainsAll => Node::SetTest(SetOp::ContainsAll, l, r),
                BinaryOp::ContainsAny => Node::SetTest(SetOp::ContainsAny, l, r),
                _ => return None,
            }
        }
        Expr::IfThenElse {
            cond,
            then_expr,
            else_expr,
        } => Node::If(
            Box::new(compile(cond)?),
            Box::new(compile(then_expr)?),
            Box::new(compile(else_expr)?),
        ),
        _ => return None,
    })
}

/// The fleet facts' record `expr` reads: `context.session` or `context.budget`.
fn record(expr: &Expr) -> Option<Key> {
    match expr {
        Expr::GetAttr { expr, attr } if matches!(&**expr, Expr::Var(Var::Context)) => {
            Key::named(attr).filter(|key| matches!(key, Key::Session | Key::Budget))
        }
        _ => None,
    }
}

/// A value during evaluation; strings and sets borrow from the context or the tree.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Bool(bool),
    Long(i64),
    Str(&'a str),
    /// A set of strings from the context (`tools`).
    Strings(&'a [String]),
    /// The detectors of the context's findings (`findings`), possibly repeated.
    Detectors(&'a [Finding]),
    /// Tags from the session's facts (`labels`, `resource_tags`), possibly repeated.
    Tags(&'a [Arc<str>]),
    Set(&'a [Elem]),
}

impl Value<'_> {
    fn as_bool(self) -> Result<bool, AskCedar> {
        match self {
            Value::Bool(b) => Ok(b),
            _ => Err(AskCedar),
        }
    }

    fn as_long(self) -> Result<i64, AskCedar> {
        match self {
            Value::Long(n) => Ok(n),
            _ => Err(AskCedar),
        }
    }

    fn is_set(self) -> bool {
        matches!(
            self,
            Value::Strings(_) | Value::Detectors(_) | Value::Tags(_) | Value::Set(_)
        )
    }

    /// Whether this set holds `item` (Cedar's `contains`: equality of values).
    fn set_has(self, item: Value<'_>) -> bool {
        match (self, item) {
            (Value::Strings(strings), Value::Str(s)) => strings.iter().any(|t| t == s),
            (Value::Detectors(findings), Value::Str(s)) => {
                findings.iter().any(|f| &*f.detector == s)
            }
            (Value::Tags(tags), Value::Str(s)) => tags.iter().any(|t| &**t == s),
            (Value::Set(elems), item) => elems.iter().any(|e| item.equals(elem_value(e))),
            _ => false,
        }
    }

    /// Whether `f` holds for every element of the set.
    fn all_elems(self, mut f: impl FnMut(Value<'_>) -> bool) -> bool {
        match self {
            Value::Strings(strings) => strings.iter().all(|t| f(Value::Str(t))),
            Value::Detectors(findings) => findings.iter().all(|x| f(Value::Str(&x.detector))),
            Value::Tags(tags) => tags.iter().all(|t| f(Value::Str(t))),
            Value::Set(elems) => elems.iter().all(|e| f(elem_value(e))),
            _ => true,
        }
    }

    /// Whether `f` holds for some element of the set.
    fn any_elem(self, mut f: impl FnMut(Value<'_>) -> bool) -> bool {
        !self.all_elems(|x| !f(x))
    }

    fn set_is_empty(self) -> bool {
        match self {
            Value::Strings(strings) => strings.is_empty(),
            Value::Detectors(findings) => findings.is_empty(),
            Value::Tags(tags) => tags.is_empty(),
            Value::Set(elems) => elems.is_empty(),
            _ => false,
        }
    }

    /// Cedar's `==`: values of different types are unequal; sets compare as sets.
    fn equals(self, other: Value<'_>) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Long(a), Value::Long(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (a, b) if a.is_set() && b.is_set() => {
                a.all_elems(|x| b.set_has(x)) && b.all_elems(|y| a.set_has(y))
            }
            _ => false,
        }
    }
}

fn elem_value(elem: &Elem) -> Value<'_> {
    match elem {
        Elem::Bool(b) => Value::Bool(*b),
        Elem::Long(n) => Value::Long(*n),
        Elem::Str(s) => Value::Str(s),
    }
}

/// A u64 as the Cedar long Warden puts in the context (saturating, as the context builder).
fn long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The LLM facts of `ctx`; on any other kind of action the attribute is missing, which
/// Cedar reports as an error.
fn llm(ctx: &ActionContext) -> Result<&LlmFacts, AskCedar> {
    match &ctx.facts {
        Facts::Llm(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The REST facts of `ctx`, as [`llm`].
fn http(ctx: &ActionContext) -> Result<&HttpFacts, AskCedar> {
    match &ctx.facts {
        Facts::Http(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The egress facts of `ctx`, as [`llm`].
fn egress(ctx: &ActionContext) -> Result<&EgressFacts, AskCedar> {
    match &ctx.facts {
        Facts::Egress(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The facts of a proposed tool call in `ctx`, as [`llm`].
fn propose(ctx: &ActionContext) -> Result<&ProposeFacts, AskCedar> {
    match &ctx.facts {
        Facts::Propose(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The facts of a server's sampling request in `ctx`, as [`llm`].
fn sample(ctx: &ActionContext) -> Result<&SampleFacts, AskCedar> {
    match &ctx.facts {
        Facts::Sample(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The facts of a server's elicitation request in `ctx`, as [`llm`].
fn elicit(ctx: &ActionContext) -> Result<&ElicitFacts, AskCedar> {
    match &ctx.facts {
        Facts::Elicit(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// The facts of a server's answer in `ctx`, as [`llm`].
fn answer(ctx: &ActionContext) -> Result<&AnswerFacts, AskCedar> {
    match &ctx.facts {
        Facts::Answer(facts) => Ok(facts),
        _ => Err(AskCedar),
    }
}

/// Whether the context Warden builds for `ctx` has `key` (Cedar's `context has`).
fn has(ctx: &ActionContext, key: Key) -> bool {
    match key {
        Key::Route
        | Key::Time
        | Key::Hour
        | Key::Weekday
        | Key::SourceIp
        | Key::Tls
        | Key::Findings => true,
        Key::ClientCertificate => ctx.client_certificate.is_some(),
        Key::Stream | Key::Tools | Key::InputTokens => llm(ctx).is_ok(),
        Key::CachedContent => llm(ctx).is_ok_and(|llm| llm.cached_content),
        Key::MaxTokens => llm(ctx).is_ok_and(|llm| llm.max_tokens.is_some()) || sample(ctx).is_ok(),
        Key::IncludeContext | Key::ModelHints | Key::SystemPromptBytes | Key::Messages => {
            sample(ctx).is_ok()
        }
        Key::Mode | Key::FieldNames => elicit(ctx).is_ok(),
        Key::Method => {
            http(ctx).is_ok()
                || egress(ctx).is_ok_and(|egress| egress.method.is_some())
                || answer(ctx).is_ok()
        }
        Key::Path => http(ctx).is_ok() || egress(ctx).is_ok_and(|egress| egress.method.is_some()),
        Key::Server => answer(ctx).is_ok() || egress(ctx).is_ok_and(|e| e.server.is_some()),
        Key::Locations => answer(ctx).is_ok(),
        Key::Uri => answer(ctx).is_ok_and(|answer| answer.uri.is_some()),
        Key::Fields => http(ctx).is_ok_and(|http| http.fields.is_some()),
        Key::Port | Key::Addresses | Key::Scheme => egress(ctx).is_ok(),
        Key::Sni => egress(ctx).is_ok_and(|egress| egress.sni.is_some()),
        Key::Arguments => {
            matches!(ctx.facts, Facts::Tool(_)) || answer(ctx).is_ok_and(|a| a.arguments.is_some())
        }
        Key::Command => propose(ctx).is_ok_and(|p| p.command.is_some()),
        Key::ArgumentsJson
        | Key::CommandParsed
        | Key::Programs
        | Key::Subcommands
        | Key::PipesToShell
        | Key::ForcePush
        | Key::RecursiveDelete
        | Key::DeletesOutsideWorkspace
        | Key::Paths
        | Key::OutsideWorkspace
        | Key::WritesOutsideWorkspace
        | Key::UnknownEffectOutsideWorkspace
        | Key::RunsInlineCode
        | Key::InlineCodePrograms
        | Key::Hosts
        | Key::Recipients => propose(ctx).is_ok(),
        Key::Session => ctx.session.is_some(),
        Key::Budget => ctx.budget.is_some(),
    }
}

struct Env<'a> {
    ctx: &'a ActionContext,
    time: Option<TimeFacts>,
}

impl<'a> Env<'a> {
    fn time(&mut self) -> TimeFacts {
        *self
            .time
            .get_or_insert_with(|| TimeFacts::of(self.ctx.time))
    }

    fn get(&mut self, key: Key) -> Result<Value<'a>, AskCedar> {
        let ctx = self.ctx;
        Ok(match key {
            Key::Route => Value::Str(&ctx.route),
            Key::Time => Value::Long(long(self.time().unix)),
            Key::Hour => Value::Long(long(self.time().hour)),
            Key::Weekday => Value::Long(long(self.time().weekday)),
            Key::Tls => Value::Bool(ctx.tls),
            Key::ClientCertificate => {
                Value::Str(ctx.client_certificate.as_deref().ok_or(AskCedar)?)
            }
            Key::Findings => Value::Detectors(&ctx.findings.0),
            Key::Stream => Value::Bool(llm(ctx)?.stream),
            Key::MaxTokens => Value::Long(long(match llm(ctx) {
                Ok(llm) => llm.max_tokens.ok_or(AskCedar)?,
                Err(_) => sample(ctx)?.max_tokens,
            })),
            Key::Tools => Value::Strings(&llm(ctx)?.tools),
            Key::InputTokens => Value::Long(long(llm(ctx)?.input_tokens)),
            Key::CachedContent => match llm(ctx)?.cached_content {
                true => Value::Bool(true),
                false => return Err(AskCedar),
            },
            Key::Method => Value::Str(match (http(ctx), answer(ctx)) {
                (Ok(http), _) => &http.method,
                (_, Ok(answer)) => &answer.method,
                _ => egress(ctx)?.method.as_deref().ok_or(AskCedar)?,
            }),
            Key::Path => Value::Str(match http(ctx) {
                Ok(http) => &http.path,
                Err(_) => egress(ctx)?.path.as_deref().ok_or(AskCedar)?,
            }),
            Key::Port => Value::Long(i64::from(egress(ctx)?.port)),
            Key::Scheme => Value::Str(&egress(ctx)?.scheme),
            Key::Sni => Value::Str(egress(ctx)?.sni.as_deref().ok_or(AskCedar)?),
            Key::ArgumentsJson => Value::Str(&propose(ctx)?.arguments_json),
            Key::Command => Value::Str(propose(ctx)?.command.as_deref().ok_or(AskCedar)?),
            Key::CommandParsed => Value::Bool(propose(ctx)?.command_parsed),
            Key::Programs => Value::Strings(&propose(ctx)?.programs),
            Key::Subcommands => Value::Strings(&propose(ctx)?.subcommands),
            Key::PipesToShell => Value::Bool(propose(ctx)?.pipes_to_shell),
            Key::ForcePush => Value::Bool(propose(ctx)?.force_push),
            Key::RecursiveDelete => Value::Bool(propose(ctx)?.recursive_delete),
            Key::DeletesOutsideWorkspace => Value::Bool(propose(ctx)?.deletes_outside_workspace),
            Key::Paths => Value::Strings(&propose(ctx)?.paths),
            Key::OutsideWorkspace => Value::Bool(propose(ctx)?.outside_workspace),
            Key::WritesOutsideWorkspace => Value::Bool(propose(ctx)?.writes_outside_workspace),
            Key::UnknownEffectOutsideWorkspace => {
                Value::Bool(propose(ctx)?.unknown_effect_outside_workspace)
            }
            Key::RunsInlineCode => Value::Bool(propose(ctx)?.runs_inline_code),
            Key::InlineCodePrograms => Value::Strings(&propose(ctx)?.inline_code_programs),
            Key::Hosts => Value::Strings(&propose(ctx)?.hosts),
            Key::Recipients => Value::Strings(&propose(ctx)?.recipients),
            Key::IncludeContext => Value::Str(&sample(ctx)?.include_context),
            Key::ModelHints => Value::Strings(&sample(ctx)?.model_hints),
            Key::SystemPromptBytes => Value::Long(long(sample(ctx)?.system_prompt_bytes)),
            Key::Messages => Value::Long(long(sample(ctx)?.messages)),
            Key::Mode => Value::Str(&elicit(ctx)?.mode),
            Key::FieldNames => Value::Strings(&elicit(ctx)?.field_names),
            Key::Server => Value::Str(match answer(ctx) {
                Ok(answer) => &answer.server,
                Err(_) => egress(ctx)?.server.as_deref().ok_or(AskCedar)?,
            }),
            Key::Locations => Value::Strings(&answer(ctx)?.locations),
            Key::Uri => Value::Str(answer(ctx)?.uri.as_deref().ok_or(AskCedar)?),
            // Not compiled: extension values, records, tool arguments.
            Key::SourceIp
            | Key::Addresses
            | Key::Fields
            | Key::Arguments
            | Key::Session
            | Key::Budget => {
                return Err(AskCedar);
            }
        })
    }
}

impl Node {
    fn eval<'a>(&'a self, env: &mut Env<'a>) -> Result<Value<'a>, AskCedar> {
        Ok(match self {
            Node::Bool(b) => Value::Bool(*b),
            Node::Long(n) => Value::Long(*n),
            Node::Str(s) => Value::Str(s),
            Node::Set(elems) => Value::Set(elems),
            Node::Get(attr) => env.get(*attr)?,
            Node::Field(field) => match field.value(env.ctx).ok_or(AskCedar)? {
                FieldValue::Long(n) => Value::Long(n),
                FieldValue::Bool(b) => Value::Bool(b),
                FieldValue::Tags(tags) => Value::Tags(tags),
            },
            Node::Has(key) => Value::Bool(has(env.ctx, *key)),
            Node::Not(e) => Value::Bool(!e.eval(env)?.as_bool()?),
            Node::Neg(e) => Value::Long(e.eval(env)?.as_long()?.checked_neg().ok_or(AskCedar)?),
            Node::IsEmpty(e) => {
                let v = e.eval(env)?;
                if !v.is_set() {
                    return Err(AskCedar);
                }
                Value::Bool(v.set_is_empty())
            }
            Node::And(l, r) => Value::Bool(l.eval(env)?.as_bool()? && r.eval(env)?.as_bool()?),
            Node::Or(l, r) => Value::Bool(l.eval(env)?.as_bool()? || r.eval(env)?.as_bool()?),
            Node::Eq(l, r) => Value::Bool(l.eval(env)?.equals(r.eval(env)?)),
            Node::NotEq(l, r) => Value::Bool(!l.eval(env)?.equals(r.eval(env)?)),
            Node::Compare(op, l, r) => {
                let (a, b) = (l.eval(env)?.as_long()?, r.eval(env)?.as_long()?);
                Value::Bool(match op {
                    Compare::Less => a < b,
                    Compare::LessEq => a <= b,
                    Compare::Greater => a > b,
                    Compare::GreaterEq => a >= b,
                })
            }
            Node::Arith(op, l, r) => {
                let (a, b) = (l.eval(env)?.as_long()?, r.eval(env)?.as_long()?);
                let n = match op {
                    Arith::Add => a.checked_add(b),
                    Arith::Sub => a.checked_sub(b),
                    Arith::Mul => a.checked_mul(b),
                };
                Value::Long(n.ok_or(AskCedar)?)
            }
            Node::SetTest(op, l, r) => {
                let (set, arg) = (l.eval(env)?, r.eval(env)?);
                if !set.is_set() {
                    return Err(AskCedar);
                }
                Value::Bool(match op {
                    SetOp::Contains => set.set_has(arg),
                    SetOp::ContainsAll if arg.is_set() => arg.all_elems(|x| set.set_has(x)),
                    SetOp::ContainsAny if arg.is_set() => arg.any_elem(|x| set.set_has(x)),
                    _ => return Err(AskCedar),
                })
            }
            Node::If(cond, then, otherwise) => {
                if cond.eval(env)?.as_bool()? {
                    then.eval(env)?
                } else {
                    otherwise.eval(env)?
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::str::FromStr;
    use std::time::{Duration, UNIX_EPOCH};

    use cedar_policy::{Entities, EntityUid, EvalResult, Policy, Request};

    use super::*;
    use crate::action::{BudgetFacts, Findings, SessionFacts, ToolFacts};
    use crate::policy::arguments::ToolArguments;
    use crate::policy::context_keys::ContextKeys;
    use crate::policy::request::{IpCache, context};
    use crate::policy::{conditions_expression, scope_free_clauses};

    /// Conditions the compiled form takes, each exercising its operators, including the
    /// places where Cedar raises an error (which the compiled form must leave to Cedar).
    const COMPILED: &[&str] = &[
        "context.input_tokens > 200000",
        "context.input_tokens > 11",
        "context.input_tokens >= 11",
        "context.input_tokens < 11",
        "context.input_tokens <= 11",
        "context.input_tokens + 1 == 12",
        "context.input_tokens - 1 == 10",
        "context.input_tokens * 2 == 22",
        "-context.input_tokens == -11",
        "context has max_tokens && context.max_tokens > 32768",
        "context.max_tokens > 5",
        "context.max_tokens > 5 || true",
        "true || context.max_tokens > 5",
        "false && context.max_tokens > 5",
        "!(context has max_tokens) || context.max_tokens <= 1",
        "context.tools.contains(\"exec\")",
        "context.tools.contains(1)",
        "context.tools.containsAny([\"exec\", \"shell\"])",
        "context.tools.containsAll([\"exec\", \"read\"])",
        "context.tools.containsAll(context.tools)",
        "context.tools.containsAny(\"exec\")",
        "context.tools.isEmpty()",
        "context.input_tokens.isEmpty()",
        "context.tools == [\"read\", \"exec\"]",
        "context.tools == [\"exec\", \"exec\"]",
        "context.tools == [\"read\"]",
        "[\"read\"] == context.tools",
        "[\"read\"].containsAll(context.tools)",
        "[\"exec\", \"shell\"].containsAny(context.tools)",
        "context.tools != []",
        "[1, 2, \"a\", true].contains(context.input_tokens)",
        "[\"openai\", \"anthropic\"].contains(context.route)",
        "context.weekday < 5 && context.hour >= 8 && context.hour < 18",
        "context.time >= 1700000000",
        "context.route == \"openai\"",
        "context.route != \"openai\" && context.stream",
        "context.stream && !context.tls",
        "context.stream == 1",
        "context.tls == context.stream",
        "if context.stream then context.input_tokens > 10 else context.tls",
        "if context.input_tokens then true else false",
        "context.input_tokens + 9223372036854775000 > 0",
        "context.input_tokens * 2 > 100",
        "-context.input_tokens < 0",
        "context.input_tokens - 1 >= 0",
        "context.route < 3",
        "context.route",
        "context.input_tokens",
        // The common facts every kind of action has.
        "context.findings.contains(\"aws_access_key\")",
        "context.findings.containsAny([\"canary\", \"aws_access_key\"])",
        "context.findings.containsAll([\"canary\", \"aws_access_key\"])",
        "context.findings.isEmpty()",
        "context.findings == [\"canary\"]",
        "context.findings.contains(1)",
        "context has client_certificate",
        "context has client_certificate && context.client_certificate == \"CN=ci-bot\"",
        "context.client_certificate == \"CN=ci-bot\"",
        "!(context has client_certificate) || context.client_certificate != \"CN=ci-bot\"",
        // The facts of one kind, read on every kind: missing elsewhere.
        "context has stream",
        "context has stream && context.stream",
        "context has max_tokens",
        "context has method && context.method == \"DELETE\"",
        "context.method == \"POST\" && context.path == \"/repos/acme/app/issues\"",
        "context has path",
        "context.port != 443",
        "context has port && context.port == 22",
        "context has sni",
        "context has sni && context.sni == \"pypi.org\"",
        "context.sni == \"pypi.org\"",
        "context has scheme && context.scheme == \"http\"",
        // The fleet facts' records, field by field.
        "context has session && context.session.read_private && context.session.resource_tags.contains(\"external\")",
        "context.session.read_private",
        "context.session.sent_external || context.session.read_private",
        "context has session.read_private && context.session.sent_external",
        "context has session",
        "context.session.labels.containsAny([\"private\", \"external\"])",
        "context.session.labels.containsAll([\"private\"])",
        "context.session.labels == [\"private\"]",
        "context.session.labels.isEmpty()",
        "context.session.resource_tags.contains(1)",
        "context.session.actions > 3 && context.session.action_count < 2 || context.session.resource_count == 0",
        "context.session.actions + 1 > 0",
        "context has budget && context.budget.exceeded",
        "context has budget.exceeded && context.budget.exceeded",
        "context.budget.exceeded",
        "context has budget && context.budget.used_ratio_percent >= 80 && !context.budget.exceeded",
        "context.budget.cost_left_micro_usd < 1000000",
        "context.budget.tokens_left * 2 > 0",
        "context.budget.tokens_left == context.budget.cost_left_micro_usd",
    ];

    /// Conditions outside the compiled subset: Cedar judges them.
    const NOT_COMPILED: &[&str] = &[
        "context.route like \"open*\"",
        "context.source_ip.isInRange(ip(\"10.0.0.0/8\"))",
        "context has source_ip",
        "context has addresses",
        "context.addresses.contains(ip(\"192.0.2.1\"))",
        "context.path like \"/admin*\"",
        "context has nonexistent",
        "principal has fleet && principal.fleet == \"x\"",
        "resource.name == \"gpt-4o\"",
        "[context.input_tokens].contains(1)",
        "context.tools.contains(\"exec\") && resource in Provider::\"openai\"",
        "context.arguments.path like \"/srv/*\"",
        "context has arguments",
        "context.arguments == {}",
        "context.session == {}",
        "context.session.nonexistent",
        "context has session.nonexistent",
        "context has session.labels.x",
        "context.session has labels",
        "context.budget.exceeded.x",
    ];

    fn clauses(condition: &str) -> Vec<Clause> {
        let text = format!("forbid (principal, action, resource) when {{ {condition} }};");
        let policy = Policy::from_str(&text).unwrap_or_else(|e| panic!("{condition}: {e}"));
        scope_free_clauses(&policy).expect("scope-free")
    }

    /// Many contexts: every combination of the values where the conditions turn, for LLM
    /// calls, and the facts of the other kinds of action.
    fn contexts() -> Vec<ActionContext> {
        let mut all = Vec::new();
        let tools: [&[&str]; 4] = [&[], &["exec"], &["read", "exec"], &["exec", "exec"]];
        // Thursday 00:00, Monday 09:30, Saturday 20:00 (UTC).
        let times = [0, 1_700_472_600, 1_700_942_400];
        let base = |route: &str, time: u64, tls: bool, facts: Facts| ActionContext {
            route: Arc::from(route),
            time: UNIX_EPOCH + Duration::from_secs(time),
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls,
            client_certificate: None,
            findings: Findings::none(),
            facts,
            session: None,
            budget: None,
        };
        for max_tokens in [None, Some(0), Some(40_000), Some(u64::MAX)] {
            for input_tokens in [0, 11, 250_000, u64::MAX] {
                for tools in tools {
                    for (stream, tls) in [(false, false), (true, false), (true, true)] {
                        for time in times {
                            for route in ["openai", "anthropic"] {
                                all.push(base(
                                    route,
                                    time,
                                    tls,
                                    Facts::Llm(LlmFacts {
                                        stream,
                                        max_tokens,
                                        tools: tools.iter().map(|t| t.to_string()).collect(),
                                        input_tokens,
                                        cached_content: false,
                                    }),
                                ));
                            }
                        }
                    }
                }
            }
        }
        let kinds = [
            Facts::Llm(LlmFacts::default()),
            Facts::Http(HttpFacts {
                method: "POST".into(),
                path: "/repos/acme/app/issues".into(),
                fields: None,
                undeclared: Vec::new(),
            }),
            Facts::Http(HttpFacts {
                method: "DELETE".into(),
                path: "/admin/users".into(),
                fields: None,
                undeclared: Vec::new(),
            }),
            Facts::Egress(EgressFacts {
                port: 443,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
                scheme: "https".into(),
                sni: Some("pypi.org".into()),
                method: None,
                path: None,
                server: Some("fetch".into()),
            }),
            Facts::Egress(EgressFacts {
                port: 22,
                addresses: Vec::new(),
                scheme: "http".into(),
                sni: None,
                method: Some("POST".into()),
                path: Some("/upload".into()),
                server: None,
            }),
            Facts::Tool(ToolFacts {
                arguments: Arc::new(serde_json::json!({ "path": "/etc/passwd" })),
            }),
            Facts::None,
        ];
        let finding = |d: &str| Finding {
            detector: Arc::from(d),
            location: "messages[0].content".into(),
        };
        let findings = [
            vec![],
            vec![finding("canary")],
            vec![
                finding("aws_access_key"),
                finding("canary"),
                finding("canary"),
            ],
        ];
        let session = |actions, labels: &[&str], tags: &[&str]| {
            Some(Box::new(SessionFacts {
                actions,
                action_count: actions / 2,
                resource_count: 0,
                labels: labels.iter().map(|t| Arc::from(*t)).collect(),
                resource_tags: tags.iter().map(|t| Arc::from(*t)).collect(),
                ..SessionFacts::default()
            }))
        };
        let sessions = [
            None,
            session(0, &[], &[]),
            session(4, &["private"], &["external"]),
            session(9, &["private", "private"], &["private"]),
            session(u64::MAX, &["external"], &["external", "private"]),
        ];
        let budget = |left: u64, ratio, exceeded| {
            Some(BudgetFacts {
                tokens_left: left,
                cost_left_micro_usd: left,
                used_ratio_percent: ratio,
                exceeded,
            })
        };
        let budgets = [
            None,
            Some(BudgetFacts::UNBOUNDED),
            budget(0, 120, true),
            budget(500_000, 85, false),
            budget(u64::MAX, 0, false),
        ];
        for session in &sessions {
            for budget in budgets {
                let mut ctx = base("openai", times[1], true, Facts::Llm(LlmFacts::default()));
                ctx.session = session.clone();
                ctx.budget = budget;
                all.push(ctx);
            }
        }
        for facts in kinds {
            for certificate in [None, Some("CN=ci-bot"), Some("CN=other")] {
                for findings in &findings {
                    let mut ctx = base("mcp", times[1], true, facts.clone());
                    ctx.client_certificate = certificate.map(Arc::from);
                    ctx.findings = Findings(findings.clone());
                    all.push(ctx);
                }
            }
        }
        all
    }

    #[test]
    fn compiled_conditions_give_cedars_answer_and_leave_its_errors_to_it() {
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let ips = IpCache::default();
        let contexts = contexts();
        let mut outcomes = std::collections::HashSet::new();
        for condition in COMPILED {
            let clauses = clauses(condition);
            let native = NativeCondition::compile(&clauses)
                .unwrap_or_else(|| panic!("`{condition}` should compile"));
            let expression = conditions_expression(&clauses).expect("expression");
            for ctx in &contexts {
                let request = Request::new(
                    uid("Agent::\"a\""),
                    uid("Action::\"llm:chat\""),
                    uid("Model::\"openai/gpt-4o\""),
                    context(ctx, &ips, ContextKeys::all(), &ToolArguments::Hidden)
                        .expect("context"),
                    None,
                )
                .expect("request");
                let cedar =
                    cedar_policy::eval_expression(&request, &Entities::empty(), &expression);
                let cedar = match cedar {
                    Ok(EvalResult::Bool(b)) => Ok(b),
                    _ => Err(AskCedar),
                };
                let got = native.holds(ctx);
                assert_eq!(got, cedar, "`{condition}` on {ctx:?}");
                outcomes.insert((*condition, got));
            }
        }
        // The cases reach every outcome: true, false and Cedar's errors.
        for outcome in [Ok(true), Ok(false), Err(AskCedar)] {
            assert!(
                outcomes.iter().any(|(_, o)| *o == outcome),
                "no condition gave {outcome:?}"
            );
        }
    }

    #[test]
    fn conditions_outside_the_subset_are_left_to_cedar() {
        for condition in NOT_COMPILED {
            assert!(
                NativeCondition::compile(&clauses(condition)).is_none(),
                "`{condition}` should not compile"
            );
        }
    }

    #[test]
    fn unless_clauses_are_negated_and_joined_in_order() {
        let text =
            "forbid (principal, action, resource) when { context.stream } unless { context.tls };";
        let policy = Policy::from_str(text).expect("parses");
        let native = NativeCondition::compile(&scope_free_clauses(&policy).expect("clauses"))
            .expect("compiles");
        let mut ctx = contexts().remove(0);
        for (stream, tls, holds) in [
            (true, false, true),
            (true, true, false),
            (false, false, false),
        ] {
            if let Some(llm) = ctx.facts.llm_mut() {
                llm.stream = stream;
            }
            ctx.tls = tls;
            assert_eq!(native.holds(&ctx), Ok(holds), "stream {stream}, tls {tls}");
        }
    }
}

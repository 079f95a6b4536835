//! Reservations: a call in flight counts as spent for the calls judged after it, not for
//! itself, and is given back exactly once, however its response ends.

use std::time::SystemTime;

use super::super::Ledger;
use super::super::tests::{agent, config, ledger, noon};
use super::*;
use crate::action::{BudgetFacts, Principal};
use crate::fleet::budget::config::ReserveConfig;
use crate::fleet::budget::{BudgetsConfig, Period, Scope};
use crate::telemetry::metrics::Metrics;

const GPT4O: (&str, &str) = ("openai", "gpt-4o");

/// `budgets.limits` as `limits` says, gpt-4o at $2.50 and $10 per million tokens.
fn priced(limits: &str) -> BudgetsConfig {
    config(limits, "openai: { gpt-4o: { input: 2.5, output: 10 } }")
}

/// An agent's $1 and 10 000 tokens a day.
fn dollar() -> BudgetsConfig {
    priced(
        "limits:\n\
         - { scope: agent, name: '*', period: day, usd: 1 }\n\
         - { scope: agent, name: '*', period: day, tokens: 10000 }\n",
    )
}

/// What `principal` has left of the budgets of `config` at `at`, the calls in flight counted.
fn left(
    ledger: &Ledger,
    config: &BudgetsConfig,
    principal: &Principal,
    at: SystemTime,
) -> BudgetFacts {
    ledger
        .judge(config, principal, at, None)
        .expect("fresh")
        .expect("bounded")
}

/// What agent `a` has left of [`dollar`] at noon, its own call `own` (if any) not counted.
fn judged(ledger: &Ledger, own: Option<&Reservation>) -> BudgetFacts {
    ledger
        .judge(&dollar(), &agent("a", &[]), noon(), own)
        .expect("fresh")
        .expect("bounded")
}

/// A ledger whose metrics the test reads.
fn metered() -> (Metrics, Ledger) {
    let metrics = Metrics::new();
    let ledger = Ledger::new(&metrics);
    (metrics, ledger)
}

/// The value of the gauge `name` in `metrics` ("" when absent).
fn gauge(metrics: &Metrics, name: &str) -> String {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn a_call_judged_while_another_is_in_flight_sees_its_reservation_as_spent() {
    let ledger = ledger();
    let a = agent("a", &[]);
    // 1000 input and 4000 output tokens: $0.0025 + $0.04.
    let first = ledger
        .reserve(&dollar(), &a, GPT4O, (1000, 4000), noon())
        .expect("a budget bounds the agent");
    assert_eq!(first.amount().micro_usd, 42_500);
    // The first call is judged on the whole budget: its own reservation is not spent yet.
    let own = judged(&ledger, Some(&first));
    assert_eq!(
        (own.cost_left_micro_usd, own.tokens_left),
        (1_000_000, 10_000)
    );
    // The second, started while the first is in flight, is judged on what the first leaves.
    let second = ledger
        .reserve(&dollar(), &a, GPT4O, (1000, 4000), noon())
        .expect("reserved");
    let after = judged(&ledger, Some(&second));
    assert_eq!(after.cost_left_micro_usd, 1_000_000 - 42_500);
    assert_eq!((after.tokens_left, after.used_ratio_percent), (5000, 50));
    assert!(!after.exceeded);
    // A third sees both: the tokens budget is spent by the calls in flight.
    let third = judged(&ledger, None);
    assert_eq!(third.tokens_left, 0);
    assert!(third.exceeded, "{third:?}");
    // Another agent's budget is its own.
    assert_eq!(
        left(&ledger, &dollar(), &agent("b", &[]), noon()).tokens_left,
        10_000
    );
    drop((first, second));
}

#[test]
fn a_reservation_is_given_back_when_dropped_and_the_gauges_follow() {
    let (metrics, ledger) = metered();
    let a = agent("a", &[]);
    let first = ledger.reserve(&dollar(), &a, GPT4O, (1000, 4000), noon());
    let second = ledger.reserve(&dollar(), &a, GPT4O, (0, 1000), noon());
    assert_eq!(gauge(&metrics, "warden_budget_reserved_usd"), "0.0525");
    assert_eq!(gauge(&metrics, "warden_budget_reserved_tokens"), "6000");
    drop(first);
    assert_eq!(judged(&ledger, None).tokens_left, 9000);
    drop(second);
    assert_eq!(judged(&ledger, None).tokens_left, 10_000);
    assert_eq!(ledger.reserved.by_account.len(), 0, "nothing left behind");
    assert_eq!(gauge(&metrics, "warden_budget_reserved_usd"), "0");
    assert_eq!(gauge(&metrics, "warden_budget_reserved_tokens"), "0");
}

#[test]
fn the_charge_replaces_the_reservation_and_counts_once() {
    let ledger = ledger();
    let config = dollar();
    let a = agent("a", &["research"]);
    let reserved = ledger
        .reserve(&config, &a, GPT4O, (1000, 4000), noon())
        .expect("reserved");
    // The response ends: its real usage is charged, then the reservation given back.
    ledger.charge(&config, &a, ("openai", "gpt-4o", None), (1000, 200), noon());
    drop(reserved);
    let facts = judged(&ledger, None);
    assert_eq!(facts.tokens_left, 10_000 - 1200);
    assert_eq!(facts.cost_left_micro_usd, 1_000_000 - 4500);
    // Reservations are not spend: the ledger's spend is the charge alone.
    assert_eq!(
        ledger
            .spent(Scope::Agent, "a", Period::Day, noon())
            .tokens(),
        1200
    );
}

#[test]
fn only_what_a_budget_bounds_is_reserved() {
    let ledger = ledger();
    let config = priced("limits: [{ scope: group, name: research, period: month, tokens: 100 }]");
    // No budget bounds an agent outside the group: nothing reserved.
    assert!(
        ledger
            .reserve(&config, &agent("a", &[]), GPT4O, (10, 10), noon())
            .is_none()
    );
    let reserved = ledger
        .reserve(&config, &agent("b", &["research"]), GPT4O, (10, 10), noon())
        .expect("the group's budget bounds it");
    assert_eq!(ledger.reserved.by_account.len(), 1);
    // Another member of the group sees it.
    let other = left(&ledger, &config, &agent("c", &["research"]), noon());
    assert_eq!(other.tokens_left, 80);
    drop(reserved);
}

#[test]
fn the_worst_case_is_the_input_ceiling_and_the_output_limit_or_the_default() {
    use crate::protocol::{Endpoint, LlmRequest};
    let reserve = ReserveConfig::default();
    let request = |endpoint: Endpoint, max: Option<u64>| LlmRequest {
        max_tokens: max,
        input_tokens: 9,
        ..LlmRequest::bare(endpoint)
    };
    let body = br#"{"messages":[{"role":"user","content":"Hello"}]}"#;
    let chat = request(Endpoint::ChatCompletions, Some(300));
    let ceiling = Ceiling::of(&chat, body);
    let input_max = body.len() as u64 + super::super::plausible::INPUT_SLACK;
    assert_eq!(
        worst_case(&chat, Some(&ceiling), &reserve),
        Some((input_max, 300))
    );
    // No output limit: the configured default.
    let unbounded = request(Endpoint::Messages, None);
    assert_eq!(worst_case(&unbounded, None, &reserve), Some((9, 4096)));
    // No output limit and n choices: the default for each of them.
    let choices = LlmRequest {
        choices: 3,
        ..request(Endpoint::ChatCompletions, None)
    };
    assert_eq!(worst_case(&choices, None, &reserve), Some((9, 3 * 4096)));
    // An output limit already counts the choices (the dialect multiplied it).
    let limited = LlmRequest {
        choices: 3,
        ..request(Endpoint::ChatCompletions, Some(300))
    };
    assert_eq!(worst_case(&limited, None, &reserve), Some((9, 300)));
    // No input ceiling (a Responses request): Warden's input estimate.
    let responses = request(Endpoint::Responses, Some(50));
    let ceiling = Ceiling::of(&responses, body);
    assert_eq!(
        worst_case(&responses, Some(&ceiling), &reserve),
        Some((9, 50))
    );
    // Embeddings generate nothing; a model list costs nothing.
    assert_eq!(
        worst_case(&request(Endpoint::Embeddings, None), None, &reserve),
        Some((9, 0))
    );
    assert_eq!(
        worst_case(&request(Endpoint::ListModels, None), None, &reserve),
        None
    );
}

#[test]
fn what_one_call_reserves_for_its_output_is_capped() {
    use crate::protocol::{Endpoint, LlmRequest};
    let huge = LlmRequest {
        max_tokens: Some(1_000_000_000),
        input_tokens: 9,
        ..LlmRequest::bare(Endpoint::ChatCompletions)
    };
    // A billion tokens asked for: the cap (128 000 unless configured) is reserved.
    assert_eq!(
        worst_case(&huge, None, &ReserveConfig::default()),
        Some((9, 128_000))
    );
    let reserve = ReserveConfig {
        default_output_tokens: 1000,
        max_output_tokens: 5000,
    };
    assert_eq!(worst_case(&huge, None, &reserve), Some((9, 5000)));
    // Under the cap, the call's own limit.
    let modest = LlmRequest {
        max_tokens: Some(300),
        ..huge
    };
    assert_eq!(worst_case(&modest, None, &reserve), Some((9, 300)));
}

/// An agent's own 2 000 000 tokens a day.
const AGENT_DAY: &str = "limits: [{ scope: agent, name: '*', period: day, tokens: 2000000 }]";

/// A research group's 1 000 000 tokens a day, and its agents' 2 000 000 each ([`AGENT_DAY`]).
fn group() -> BudgetsConfig {
    priced(
        "limits:\n\
         - { scope: group, name: research, period: day, tokens: 1000000 }\n\
         - { scope: agent, name: '*', period: day, tokens: 2000000 }\n",
    )
}

/// What agent `id` of the research group has left of `config` at noon.
fn judged_in(ledger: &Ledger, config: &BudgetsConfig, id: &str) -> BudgetFacts {
    left(ledger, config, &agent(id, &["research"]), noon())
}

/// What `a` has left at `at` of its own day budget ([`AGENT_DAY`], its group's not counted).
fn own_tokens_left(ledger: &Ledger, a: &Principal, at: SystemTime) -> u64 {
    left(ledger, &priced(AGENT_DAY), a, at).tokens_left
}

#[test]
fn a_call_asking_for_a_billion_tokens_does_not_make_its_group_look_spent() {
    use crate::protocol::{Endpoint, LlmRequest};
    let ledger = ledger();
    let config = group();
    let huge = LlmRequest {
        max_tokens: Some(1_000_000_000),
        input_tokens: 100,
        ..LlmRequest::bare(Endpoint::ChatCompletions)
    };
    let worst = worst_case(&huge, None, &config.reserve).expect("a chat costs");
    let greedy = ledger
        .reserve(&config, &agent("a", &["research"]), GPT4O, worst, noon())
        .expect("reserved");
    assert_eq!(greedy.amount().tokens(), 128_100);
    // Another agent of the group, judged while it is in flight: what is left past it.
    let other = judged_in(&ledger, &config, "b");
    assert!(!other.exceeded, "{other:?}");
    assert_eq!(other.tokens_left, 1_000_000 - 128_100);
    drop(greedy);
}

/// A metered ledger on [`group`]'s budgets, and a call of agent `a` of the research group in
/// flight since noon, reserving 400 000 tokens (1000 in, 399 000 out).
fn a_group_call_in_flight() -> (Metrics, Ledger, BudgetsConfig, Principal, Reservation) {
    let (metrics, ledger) = metered();
    let config = group();
    let a = agent("a", &["research"]);
    let call = ledger
        .reserve(&config, &a, GPT4O, (1000, 399_000), noon())
        .expect("reserved");
    (metrics, ledger, config, a, call)
}

#[test]
fn a_call_held_for_approval_holds_its_agents_budget_only_until_approved() {
    let (metrics, ledger, config, a, mut held) = a_group_call_in_flight();
    assert_eq!(judged_in(&ledger, &config, "b").tokens_left, 600_000);
    // Held for approval: the group's budget is free of it, the agent's own is not.
    held.hold_on_agent_only();
    assert!(held.narrowed());
    assert_eq!(judged_in(&ledger, &config, "b").tokens_left, 1_000_000);
    let own = left(&ledger, &config, &a, noon());
    assert_eq!(own.tokens_left, 1_000_000, "the group's, tighter");
    let solo = own_tokens_left(&ledger, &a, noon());
    assert_eq!(solo, 2_000_000 - 400_000, "its own budget still holds it");
    // Approved: reserved on the group again.
    assert!(ledger.widen(&mut held, &config, &a, noon()));
    assert!(!held.narrowed());
    assert_eq!(judged_in(&ledger, &config, "b").tokens_left, 600_000);
    assert!(!ledger.widen(&mut held, &config, &a, noon()), "once");
    assert_eq!(judged_in(&ledger, &config, "b").tokens_left, 600_000);
    drop(held);
    assert_eq!(judged_in(&ledger, &config, "b").tokens_left, 1_000_000);
    assert_eq!(ledger.reserved.by_account.len(), 0, "nothing left behind");
    assert_eq!(gauge(&metrics, "warden_budget_reserved_tokens"), "0");
}

#[test]
fn a_held_call_of_an_agent_with_no_budget_of_its_own_reserves_nothing_until_approved() {
    let (metrics, ledger) = metered();
    let config = priced("limits: [{ scope: fleet, period: day, tokens: 100000 }]");
    let a = agent("a", &[]);
    let tokens = || gauge(&metrics, "warden_budget_reserved_tokens");
    let mut held = ledger
        .reserve(&config, &a, GPT4O, (1000, 4000), noon())
        .expect("the fleet's budget bounds it");
    assert_eq!(tokens(), "5000");
    held.hold_on_agent_only();
    assert_eq!(ledger.reserved.by_account.len(), 0);
    assert_eq!(tokens(), "0", "nothing reserved while it waits");
    assert!(ledger.widen(&mut held, &config, &a, noon()));
    assert_eq!(tokens(), "5000");
    assert_eq!(
        left(&ledger, &config, &agent("b", &[]), noon()).tokens_left,
        95_000
    );
    drop(held);
    assert_eq!(tokens(), "0");
}

#[test]
fn a_call_approved_after_midnight_moves_its_agents_reservation_to_the_new_day() {
    use std::time::Duration;
    let (metrics, ledger, config, a, mut held) = a_group_call_in_flight();
    held.hold_on_agent_only();
    // Approved the next day, 13 hours later.
    let tomorrow = noon() + Duration::from_secs(13 * 3600);
    assert!(ledger.widen(&mut held, &config, &a, tomorrow));
    let own = |at| 2_000_000 - own_tokens_left(&ledger, &a, at);
    // Held once (the old day's given back), counted in the day it is judged in.
    assert_eq!(own(tomorrow), 400_000, "held on the agent's new day");
    let b = left(&ledger, &config, &agent("b", &["research"]), tomorrow);
    assert_eq!(b.tokens_left, 600_000, "held on the group's new day");
    drop(held);
    assert_eq!(own(tomorrow), 0);
    assert_eq!(ledger.reserved.by_account.len(), 0, "nothing left behind");
    assert_eq!(gauge(&metrics, "warden_budget_reserved_tokens"), "0");
}

#[test]
fn a_call_in_flight_when_the_day_ends_counts_against_the_new_day_where_it_is_charged() {
    let ledger = ledger();
    let a = agent("a", &[]);
    let midnight = noon() + std::time::Duration::from_secs(12 * 3600);
    let before = midnight - std::time::Duration::from_secs(1);
    let after = midnight + std::time::Duration::from_secs(1);
    // Started a second before midnight, 8000 tokens of the day's 10 000.
    let late = ledger
        .reserve(&dollar(), &a, GPT4O, (1000, 7000), before)
        .expect("reserved");
    // Judged a second after midnight: the call still in flight will be charged to the new day,
    // so the new day's budget counts it.
    let facts = left(&ledger, &dollar(), &a, after);
    assert_eq!(facts.tokens_left, 2000, "{facts:?}");
    // Its own reservation is still not its own spend.
    let own = ledger
        .judge(&dollar(), &a, after, Some(&late))
        .expect("fresh")
        .expect("bounded");
    assert_eq!(own.tokens_left, 10_000);
    // Charged in the new day and given back: counted once.
    ledger.charge(
        &dollar(),
        &a,
        ("openai", "gpt-4o", None),
        (1000, 7000),
        after,
    );
    drop(late);
    assert_eq!(left(&ledger, &dollar(), &a, after).tokens_left, 2000);
}

//! What a response is charged when the provider's usage cannot be read: the agent left and
//! the rest of the answer could not be read either, the upstream cut the answer, a whole body
//! was too large to read its usage from, or a successful answer reported none. Charging zero
//! would let an agent spend without being counted; the estimate charges at least what the
//! answer cost, never more than the request allowed.
//!
//! - input: the tokens the provider reported, else the request's own estimate (a quarter of the
//!   characters of its prompt, system and tools: `protocol::estimate`);
//! - output: a quarter of the bytes of the answer Warden read (its framing counts as text, so
//!   this is an upper bound), at least what the provider reported so far, at most the
//!   request's `max_tokens` (the provider stops there); nothing for embeddings.
//!
//! A request its agent left while the upstream had it, before any answer came, has nothing
//! read to count ([`Estimate::unanswered`]): the provider may have generated (and billed) the
//! whole answer, a non-streamed one certainly, so it is charged the most it could generate —
//! its output limit for each choice it asks for, else `budgets.reserve.default_output_tokens`,
//! at most `budgets.reserve.max_output_tokens` (the largest output a model generates for one
//! choice), times those choices ([`most_output`], what it reserved): an agent leaving early
//! pays what the provider can bill, and a limit no model honours charges no one for nothing.

use super::config::ReserveConfig;
use crate::protocol::{Endpoint, LlmRequest, Usage};

/// Bytes of an answer counted as one output token.
const BYTES_PER_TOKEN: u64 = 4;

/// What an LLM request lets an estimate charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// The request's input-token estimate.
    input_tokens: u64,
    /// The output-token limit the request sets, if any.
    max_output: Option<u64>,
    /// The answer's output counts (generation; not embeddings).
    generates: bool,
}

/// Whether an answer from `endpoint` has output tokens (generation, not embeddings); `None`
/// for calls that cost nothing (model lists, token counts).
pub fn generates(endpoint: &Endpoint) -> Option<bool> {
    match endpoint {
        Endpoint::ChatCompletions
        | Endpoint::Completions
        | Endpoint::Responses
        | Endpoint::Messages
        | Endpoint::GenerateContent
        | Endpoint::StreamGenerateContent => Some(true),
        Endpoint::Embeddings | Endpoint::EmbedContent | Endpoint::BatchEmbedContents => Some(false),
        Endpoint::ListModels | Endpoint::GetModel | Endpoint::CountTokens => None,
    }
}

/// The most output tokens one call reserves for `request`'s answer while it is in flight: per
/// choice it asks for, its output limit for one choice (the dialect's limit divided by the
/// choices), else `reserve.default_output_tokens`, at most `reserve.max_output_tokens` (the
/// largest output limit a model accepts, for one choice), times the choices. An answer can
/// still be charged more, from its usage; left unanswered, it is charged this. None for
/// embeddings; `None` for calls that cost nothing (model lists, token counts).
pub fn most_output(request: &LlmRequest, reserve: &ReserveConfig) -> Option<u64> {
    let generates = generates(&request.endpoint)?;
    let choices = request.choices.max(1);
    let per_choice = match (generates, request.max_tokens) {
        (false, _) => return Some(0),
        (true, Some(limit)) => limit.div_ceil(choices),
        (true, None) => reserve.default_output_tokens,
    };
    Some(
        per_choice
            .min(reserve.max_output_tokens)
            .saturating_mul(choices),
    )
}

impl Estimate {
    /// What a request its agent left before any answer came, while the upstream had it, is
    /// charged (`reserve`: `budgets.reserve`): input, Warden's own estimate of the request
    /// (nothing was reported); output, the most it could generate: its output limit for each
    /// choice, at most `reserve.max_output_tokens` (the largest output a model generates for one
    /// choice), times the choices ([`most_output`]), erring towards charging more without
    /// letting a limit no model honours (`max_tokens: 10^9`) charge its group and the fleet for
    /// output no provider bills. `None` for calls that cost nothing.
    pub fn unanswered(request: &LlmRequest, reserve: &ReserveConfig) -> Option<(u64, u64)> {
        Some((request.input_tokens, most_output(request, reserve)?))
    }

    /// The estimate for `request`'s answer; `None` for calls that cost nothing (model lists,
    /// token counts).
    pub fn of(request: &LlmRequest) -> Option<Estimate> {
        Some(Estimate {
            input_tokens: request.input_tokens,
            max_output: request.max_tokens,
            generates: generates(&request.endpoint)?,
        })
    }

    /// Whether an answer that reported `usage` and was read to its end (`ended`) or not must be
    /// charged an estimate: it was not read to its end, or it reported nothing.
    pub fn needed(usage: &Usage, ended: bool) -> bool {
        !ended || (usage.input_tokens.is_none() && usage.output_tokens.is_none())
    }

    /// The input and output tokens to charge for an answer of which `bytes` were read, that
    /// reported `usage` by then.
    pub fn tokens(&self, usage: &Usage, bytes: u64) -> (u64, u64) {
        let input = usage.input_tokens.unwrap_or(self.input_tokens);
        if !self.generates {
            return (input, usage.output_tokens.unwrap_or(0));
        }
        let reported = usage.output_tokens.unwrap_or(0);
        let read = bytes.div_ceil(BYTES_PER_TOKEN);
        let output = match self.max_output {
            Some(max) => read.min(max),
            None => read,
        };
        (input, output.max(reported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: Endpoint, input: u64, max: Option<u64>) -> LlmRequest {
        LlmRequest {
            input_tokens: input,
            max_tokens: max,
            ..LlmRequest::bare(endpoint)
        }
    }

    fn reported(input: Option<u64>, output: Option<u64>) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        }
    }

    #[test]
    fn an_estimate_charges_the_input_estimate_and_a_quarter_of_the_bytes_read() {
        let chat = Estimate::of(&request(Endpoint::ChatCompletions, 120, None));
        let chat = chat.unwrap_or_else(|| panic!("a chat is charged"));
        assert_eq!(chat.tokens(&Usage::default(), 1001), (120, 251));
        // What the provider reported wins over the request's estimate, and bounds the output
        // from below.
        assert_eq!(
            chat.tokens(&reported(Some(3000), Some(900)), 400),
            (3000, 900)
        );
    }

    #[test]
    fn an_estimate_never_charges_past_max_tokens_nor_output_for_embeddings() {
        let bounded = Estimate::of(&request(Endpoint::Messages, 10, Some(100)));
        let bounded = bounded.unwrap_or_else(|| panic!("a message is charged"));
        assert_eq!(bounded.tokens(&Usage::default(), 5_000_000), (10, 100));
        let embed = Estimate::of(&request(Endpoint::Embeddings, 700, None));
        let embed = embed.unwrap_or_else(|| panic!("an embedding is charged"));
        assert_eq!(embed.tokens(&Usage::default(), 5_000_000), (700, 0));
        assert_eq!(Estimate::of(&request(Endpoint::ListModels, 0, None)), None);
        assert_eq!(Estimate::of(&request(Endpoint::CountTokens, 9, None)), None);
    }

    /// `budgets.reserve` with `default_output_tokens: default` (and the default cap).
    fn reserving(default: u64) -> ReserveConfig {
        ReserveConfig {
            default_output_tokens: default,
            ..ReserveConfig::default()
        }
    }

    #[test]
    fn a_request_left_before_its_answer_is_charged_the_most_it_could_generate() {
        let reserve = reserving(4096);
        // Its output limit (times its choices, as the dialect read it)...
        let limited = request(Endpoint::ChatCompletions, 12, Some(300));
        assert_eq!(Estimate::unanswered(&limited, &reserve), Some((12, 300)));
        // ...else the default output, times the choices it asks for.
        let unlimited = LlmRequest {
            choices: 3,
            ..request(Endpoint::ChatCompletions, 12, None)
        };
        assert_eq!(
            Estimate::unanswered(&unlimited, &reserve),
            Some((12, 3 * 4096))
        );
        let one = request(Endpoint::GenerateContent, 5, None);
        assert_eq!(
            Estimate::unanswered(&one, &reserving(1000)),
            Some((5, 1000))
        );
        // Embeddings generate nothing; model lists and token counts cost nothing.
        let embed = request(Endpoint::Embeddings, 700, None);
        assert_eq!(Estimate::unanswered(&embed, &reserve), Some((700, 0)));
        let count = request(Endpoint::CountTokens, 9, None);
        assert_eq!(Estimate::unanswered(&count, &reserve), None);
    }

    #[test]
    fn a_request_left_before_its_answer_is_charged_each_choice_up_to_the_cap() {
        // Eight choices of 100 000 tokens each (the dialect's limit, 800 000): the provider may
        // bill all of them, so all are charged, not the 128 000 of the cap.
        let many = LlmRequest {
            choices: 8,
            ..request(Endpoint::ChatCompletions, 12, Some(800_000))
        };
        let reserve = ReserveConfig::default();
        assert_eq!(Estimate::unanswered(&many, &reserve), Some((12, 800_000)));
        // A limit past the cap is charged the cap: no model generates 10^9 tokens for one
        // choice, and charging them would empty the group's and the fleet's budgets for free.
        let huge = request(Endpoint::ChatCompletions, 12, Some(1_000_000_000));
        assert_eq!(Estimate::unanswered(&huge, &reserve), Some((12, 128_000)));
        // The default times many choices is not capped either.
        let reserve = ReserveConfig {
            default_output_tokens: 4096,
            max_output_tokens: 10_000,
        };
        let choices = LlmRequest {
            choices: 8,
            ..request(Endpoint::Messages, 3, None)
        };
        assert_eq!(
            Estimate::unanswered(&choices, &reserve),
            Some((3, 8 * 4096))
        );
    }

    #[test]
    fn a_reservation_caps_each_choice_not_the_call() {
        let reserve = ReserveConfig::default();
        // Eight choices of 100 000 tokens: each under the cap, all held.
        let many = LlmRequest {
            choices: 8,
            ..request(Endpoint::ChatCompletions, 12, Some(800_000))
        };
        assert_eq!(most_output(&many, &reserve), Some(800_000));
        // Two choices of a billion tokens: each held at the cap.
        let huge = LlmRequest {
            choices: 2,
            ..request(Endpoint::ChatCompletions, 12, Some(2_000_000_000))
        };
        assert_eq!(most_output(&huge, &reserve), Some(256_000));
        // The default, per choice, under a lower cap.
        let reserve = ReserveConfig {
            default_output_tokens: 4096,
            max_output_tokens: 5000,
        };
        let default = LlmRequest {
            choices: 3,
            ..request(Endpoint::Messages, 3, None)
        };
        assert_eq!(most_output(&default, &reserve), Some(3 * 4096));
        let embed = request(Endpoint::Embeddings, 700, None);
        assert_eq!(most_output(&embed, &reserve), Some(0));
        assert_eq!(
            most_output(&request(Endpoint::ListModels, 0, None), &reserve),
            None
        );
    }

    #[test]
    fn an_estimate_is_needed_when_the_answer_was_not_read_to_its_end_or_reported_nothing() {
        assert!(Estimate::needed(&reported(Some(1), Some(1)), false));
        assert!(Estimate::needed(&Usage::default(), true));
        assert!(!Estimate::needed(&reported(Some(8), None), true));
        assert!(!Estimate::needed(&reported(Some(8), Some(2)), true));
    }
}

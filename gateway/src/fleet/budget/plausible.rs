//! What usage an answer can report for its request: a provider that reports more tokens than
//! the request allows is not believed. Believable usage is charged as reported (a provider can
//! burn a budget with it: the operator's contract with the provider is the remedy); usage past
//! what the request allows is clamped to the ceiling, and the outcome record and the log say so
//! (`usage_implausible`).
//!
//! - output: at most the request's output limit (`LlmRequest::max_tokens`: the larger of
//!   OpenAI's `max_tokens` and `max_completion_tokens`, or `max_output_tokens`, Anthropic's
//!   `max_tokens`, Gemini's `maxOutputTokens`, each times the choices asked for). A request
//!   that sets none has no output ceiling.
//! - input: at most one token per byte of the request's body plus [`INPUT_SLACK`] (what a
//!   provider adds around it: a tool-use system prompt, a built-in tool's definition), when
//!   everything the model reads is in the body. A request that may make the provider read
//!   more than its body (a stored response or conversation, a file or image by id or URL, a
//!   cache, a server-side tool such as web search, an MCP server; [`REFERENCES`]), and any
//!   Responses API request (whose inputs may be stored items), has no input ceiling.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crate::protocol::{Endpoint, LlmRequest, Usage};

/// Input tokens allowed beyond one per byte of the body: what a provider adds to a request
/// (Anthropic's tool-use system prompt and built-in tools' definitions take up to about 1 500).
pub const INPUT_SLACK: u64 = 8192;

/// Text (compared ignoring ASCII case) whose presence in a request body may make the provider
/// read content that is not in it: then its input has no ceiling. A `\u` escape could spell
/// any of them, so it counts too.
pub const REFERENCES: &[&str] = &[
    // Content by reference: a file or an image by id or URL, a provider's cache.
    "file_id",
    "image_url",
    "\"url\"",
    "\"fileuri\"",
    "\"file_uri\"",
    "\"filedata\"",
    "\"file_data\"",
    "\"cachedcontent\"",
    "\"cached_content\"",
    // Server-side tools whose results the model reads: search, fetch, code, MCP servers.
    "_search",
    "search_",
    "googlesearch",
    "websearch",
    "aisearch",
    "retrieval",
    "url_context",
    "urlcontext",
    "web_fetch",
    "code_execution",
    "codeexecution",
    "code_interpreter",
    "\"container\"",
    "mcp",
    // An escape could spell any of them.
    "\\u",
];

/// What usage an answer to one request can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ceiling {
    input: Option<u64>,
    output: Option<u64>,
}

/// One figure a provider reported past its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Implausible {
    /// `input_tokens` or `output_tokens`.
    pub figure: &'static str,
    pub reported: u64,
    pub ceiling: u64,
}

impl Implausible {
    /// The finding's location in the outcome record and the log: the figure, what was
    /// reported and what the request allows.
    pub fn location(&self) -> String {
        format!(
            "usage.{}: {} reported, the request allows at most {}",
            self.figure, self.reported, self.ceiling
        )
    }
}

/// The detector name of the finding an implausible usage leaves in the outcome record.
pub const DETECTOR: &str = "usage_implausible";

impl Ceiling {
    /// The ceiling of `request`'s answer, its body being `body`.
    pub fn of(request: &LlmRequest, body: &[u8]) -> Ceiling {
        let input = match request.endpoint {
            Endpoint::Responses | Endpoint::ListModels | Endpoint::GetModel => None,
            _ if references(body) => None,
            _ => Some((body.len() as u64).saturating_add(INPUT_SLACK)),
        };
        Ceiling {
            input,
            output: request.max_tokens,
        }
    }

    /// The most input tokens the answer can be charged, when the request bounds them.
    pub fn input(&self) -> Option<u64> {
        self.input
    }

    /// Clamps what `usage` reports to the ceiling: the figures that were past it.
    pub fn clamp(&self, usage: &mut Usage) -> Vec<Implausible> {
        let mut past = Vec::new();
        for (figure, reported, ceiling) in [
            ("input_tokens", &mut usage.input_tokens, self.input),
            ("output_tokens", &mut usage.output_tokens, self.output),
        ] {
            if let (Some(value), Some(ceiling)) = (reported.as_mut(), ceiling)
                && *value > ceiling
            {
                past.push(Implausible {
                    figure,
                    reported: *value,
                    ceiling,
                });
                *value = ceiling;
            }
        }
        past
    }
}

/// [`REFERENCES`] as one automaton ignoring ASCII case: one pass over the body, whatever the
/// number of needles (comparing each needle at every offset cost a fifth of a request's CPU).
static REFERENCE_FINDER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(REFERENCES)
        .expect("REFERENCES are a handful of short literals")
});

/// Whether `body` may make the provider read content that is not in it ([`REFERENCES`]).
fn references(body: &[u8]) -> bool {
    REFERENCE_FINDER.is_match(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: Endpoint, max: Option<u64>) -> LlmRequest {
        LlmRequest {
            max_tokens: max,
            ..LlmRequest::bare(endpoint)
        }
    }

    fn reported(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Usage::default()
        }
    }

    const CHAT: &[u8] =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":200}"#;

    #[test]
    fn usage_past_the_requests_output_limit_or_its_size_is_clamped_and_said() {
        let ceiling = Ceiling::of(&request(Endpoint::ChatCompletions, Some(200)), CHAT);
        let input_max = CHAT.len() as u64 + INPUT_SLACK;
        let mut usage = reported(50_000_000, 1_000_000);
        let past = ceiling.clamp(&mut usage);
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(input_max), Some(200))
        );
        assert_eq!(
            past,
            [
                Implausible {
                    figure: "input_tokens",
                    reported: 50_000_000,
                    ceiling: input_max
                },
                Implausible {
                    figure: "output_tokens",
                    reported: 1_000_000,
                    ceiling: 200
                },
            ]
        );
        assert!(past[1].location().contains("1000000 reported"), "{past:?}");
        // Believable usage is charged as reported.
        let mut usage = reported(input_max, 200);
        assert!(ceiling.clamp(&mut usage).is_empty());
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(input_max), Some(200))
        );
    }

    #[test]
    fn a_request_that_may_make_the_provider_read_more_than_its_body_has_no_input_ceiling() {
        for body in [
            &br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#[..],
            br#"{"contents":[{"parts":[{"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]}"#,
            br#"{"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            br#"{"messages":[{"role":"user","content":"caf\u00e9"}]}"#,
            br#"{"messages":[],"mcp_servers":[{"type":"url","url":"https://m"}]}"#,
        ] {
            let ceiling = Ceiling::of(&request(Endpoint::Messages, Some(10)), body);
            let mut usage = reported(5_000_000, 10);
            assert!(ceiling.clamp(&mut usage).is_empty(), "{}", String::from_utf8_lossy(body));
        }
        // The Responses API may read stored items: no input ceiling, the output one holds.
        let ceiling = Ceiling::of(&request(Endpoint::Responses, Some(10)), b"{}");
        let mut usage = reported(5_000_000, 11);
        let past = ceiling.clamp(&mut usage);
        assert_eq!(past.len(), 1);
        assert_eq!(usage.input_tokens, Some(5_000_000));
        assert_eq!(usage.output_tokens, Some(10));
        // No output limit set: no output ceiling.
        let ceiling = Ceiling::of(&request(Endpoint::ChatCompletions, None), CHAT);
        let mut usage = reported(1, 9_000_000);
        assert!(ceiling.clamp(&mut usage).is_empty());
    }

    #[test]
    fn every_reference_is_found_in_any_ascii_case_and_anywhere_in_the_body() {
        for needle in REFERENCES {
            for spelled in [needle.to_string(), needle.to_ascii_uppercase()] {
                let body = format!(r#"{{"messages":[{{"role":"user","content":"a{spelled}b"}}]}}"#);
                assert!(references(body.as_bytes()), "{spelled} not found");
                assert!(references(spelled.as_bytes()), "{spelled} alone not found");
            }
        }
        assert!(!references(CHAT));
        assert!(!references(b""));
    }
}

//! The types of an LLM call, shared by the LLM dialects: which endpoint a request calls and
//! what it asks for.

use std::fmt;

use crate::action::Verb;

/// Which endpoint of an LLM protocol a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI `POST /chat/completions`.
    ChatCompletions,
    /// OpenAI legacy `POST /completions`.
    Completions,
    /// OpenAI `POST /responses`.
    Responses,
    /// OpenAI `POST /embeddings`.
    Embeddings,
    /// `GET /models` (every protocol).
    ListModels,
    /// `GET /models/{id}` (every protocol).
    GetModel,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`, Gemini `:countTokens`.
    CountTokens,
    /// Gemini `:generateContent`.
    GenerateContent,
    /// Gemini `:streamGenerateContent`.
    StreamGenerateContent,
    /// Gemini `:embedContent`.
    EmbedContent,
    /// Gemini `:batchEmbedContents`.
    BatchEmbedContents,
}

impl Endpoint {
    /// The verb policies judge for this endpoint.
    pub fn verb(self) -> Verb {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Responses
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::GenerateContent
            | Endpoint::StreamGenerateContent => Verb::LlmChat,
            Endpoint::Embeddings | Endpoint::EmbedContent | Endpoint::BatchEmbedContents => {
                Verb::LlmEmbed
            }
            Endpoint::ListModels | Endpoint::GetModel => Verb::LlmModels,
        }
    }

    /// A stable name for logs and audit (`chat_completions`, `generate_content`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ListModels => "list_models",
            Endpoint::GetModel => "get_model",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::GenerateContent => "generate_content",
            Endpoint::StreamGenerateContent => "stream_generate_content",
            Endpoint::EmbedContent => "embed_content",
            Endpoint::BatchEmbedContents => "batch_embed_contents",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an LLM request asks for, as its dialect reads it: the facts policy and audit need, and
/// what the dialect needs to answer it in its own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRequest {
    /// `LlmChat`, `LlmEmbed` or `LlmModels`.
    pub verb: Verb,
    /// The model as sent: from the body, the Gemini path `models/{model}:...`, or
    /// `GET /models/{id}`; checked as an identifier (`identifier.rs`).
    pub model: Option<String>,
    /// The model as policy judges it, when that differs from `model`: its Unicode look-alikes
    /// folded to the ASCII name they imitate (`identifier.rs`).
    pub folded_model: Option<String>,
    /// The response is requested as a stream.
    pub stream: bool,
    /// Output token limit the request sets, if any (the larger, when it sets several), times
    /// the choices it asks for ([`output_limit`]).
    pub max_tokens: Option<u64>,
    /// The most choices the request asks for (OpenAI `n`, `best_of`, Gemini `candidateCount`;
    /// one when none is given), each of which may generate up to the per-choice output limit:
    /// what a default output limit is multiplied by when the request sets none.
    pub choices: u64,
    /// Names of the tools the request declares (function names; built-in tool types).
    pub tools: Vec<String>,
    /// Estimated input tokens of prompt, system and tool definitions (see `estimate`).
    pub input_tokens: u64,
    /// Which endpoint is called.
    pub endpoint: Endpoint,
    /// OpenAI `stream_options.include_usage`: a streamed answer ends with a usage chunk.
    pub include_usage: bool,
    /// The streamed answer is `text/event-stream` (Gemini streams only with `alt=sse`;
    /// without it they are one JSON array).
    pub event_stream: bool,
    /// The request names content cached at the provider (Gemini's `cachedContent`).
    pub cached_content: bool,
}

/// The most output tokens a request can produce: `per_choice` times the most choices any of
/// `choices` asks for (OpenAI `n`, `best_of`, Gemini `candidateCount`; one when none is given),
/// so that a limit that looks small cannot hide a hundred answers behind it.
pub fn output_limit<const N: usize>(
    per_choice: Option<u64>,
    choices: [Option<u64>; N],
) -> Option<u64> {
    let choices = most_choices(choices);
    per_choice.map(|limit| limit.saturating_mul(choices))
}

/// The most choices any of `choices` asks for; one when none is given (or one asks for none).
pub fn most_choices<const N: usize>(choices: [Option<u64>; N]) -> u64 {
    choices.into_iter().flatten().max().unwrap_or(1).max(1)
}

impl LlmRequest {
    /// An interpretation with no body facts (model listing and retrieval).
    pub fn bare(endpoint: Endpoint) -> Self {
        LlmRequest {
            verb: endpoint.verb(),
            model: None,
            folded_model: None,
            stream: false,
            max_tokens: None,
            choices: 1,
            tools: Vec::new(),
            input_tokens: 0,
            endpoint,
            include_usage: false,
            event_stream: false,
            cached_content: false,
        }
    }

    /// Whether the client reads the answer as an event stream: it asked to stream, and its
    /// streamed answer is `text/event-stream` (not a Gemini JSON array). Otherwise it reads
    /// the body whole, as JSON, whatever content type the upstream gives.
    pub fn streams_events(&self) -> bool {
        self.stream && self.event_stream
    }

    /// This request naming `model`, as checked by `parse::checked_model`.
    pub fn with_model(mut self, (model, folded): (String, Option<String>)) -> Self {
        self.model = Some(model);
        self.folded_model = folded;
        self
    }
}

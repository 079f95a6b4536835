//! Where OpenAI responses report usage: Chat Completions, Completions and Embeddings
//! (`prompt_tokens`, `completion_tokens`; a stream's last chunk with `include_usage`) and
//! Responses (`input_tokens`, `output_tokens`, in the terminal `response.*` event).

use serde::Deserialize;

use crate::protocol::usage::Usage;

/// Whether a stream's event named `event` can carry usage: Chat Completions events are
/// unnamed; Responses names its events, and only the terminal ones carry usage.
pub fn event_wanted(event: &[u8]) -> bool {
    !event.starts_with(b"response.")
        || matches!(
            event,
            b"response.completed" | b"response.incomplete" | b"response.failed"
        )
}

/// The usage a stream event or a whole body reports.
pub fn from_json(data: &[u8]) -> Usage {
    serde_json::from_slice::<OpenaiBody<'_>>(data)
        .ok()
        .map(OpenaiBody::usage)
        .unwrap_or_default()
}

/// OpenAI usage: Chat Completions / Completions / Embeddings (`prompt_tokens`,
/// `completion_tokens`) and Responses (`input_tokens`, `output_tokens`).
#[derive(Debug, Deserialize)]
struct OpenaiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl OpenaiUsage {
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens),
            output_tokens: self.completion_tokens.or(self.output_tokens),
            ..Usage::default()
        }
    }
}

/// An OpenAI body or event: usage at the top (chat chunk, JSON body) or in `response`
/// (Responses `response.completed`).
#[derive(Debug, Deserialize)]
struct OpenaiBody<'a> {
    usage: Option<OpenaiUsage>,
    #[serde(borrow)]
    response: Option<OpenaiResponse<'a>>,
    #[serde(borrow)]
    model: Option<&'a str>,
    #[serde(default, borrow)]
    choices: Vec<OpenaiChoice<'a>>,
}

#[derive(Debug, Deserialize)]
struct OpenaiResponse<'a> {
    usage: Option<OpenaiUsage>,
    #[serde(borrow)]
    model: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct OpenaiChoice<'a> {
    #[serde(borrow)]
    finish_reason: Option<&'a str>,
}

impl OpenaiBody<'_> {
    fn usage(self) -> Usage {
        let model = self.model.or(self.response.as_ref().and_then(|r| r.model));
        self.usage
            .or(self.response.and_then(|r| r.usage))
            .map(OpenaiUsage::usage)
            .unwrap_or_default()
            .with_response(model, self.choices.iter().map(|c| c.finish_reason))
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::scanner::UsageScanner;
    use crate::protocol::scanner::tests::{assert_usage_at_every_split, usage};
    use crate::protocol::usage::Usage;

    use super::super::OpenAi;

    const OPENAI_CHAT_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"exec\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"command\\\":\\\"ls\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-C1\",\"object\":\"chat.completion.chunk\",\"created\":1762000000,\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[],\"usage\":{\"prompt_tokens\":9120,\"completion_tokens\":18,\"total_tokens\":9138,\"prompt_tokens_details\":{\"cached_tokens\":8960,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn reads_openai_chat_final_usage_chunk_at_every_split() {
        assert_usage_at_every_split(&OpenAi, true, OPENAI_CHAT_STREAM, usage(9120, 18));
        let crlf = OPENAI_CHAT_STREAM.replace("\n\n", "\r\n\r\n");
        assert_usage_at_every_split(&OpenAi, true, &crlf, usage(9120, 18));
    }

    #[test]
    fn openai_stream_without_usage_reports_none() {
        let without: String = OPENAI_CHAT_STREAM
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("prompt_tokens"))
            .collect();
        assert_usage_at_every_split(&OpenAi, true, &without, Usage::default());
    }

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi usage\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi usage\"}]}],\"usage\":{\"input_tokens\":328,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":52,\"output_tokens_details\":{\"reasoning_tokens\":32},\"total_tokens\":380}}}\n\n",
    );

    #[test]
    fn reads_openai_responses_completed_usage_at_every_split() {
        assert_usage_at_every_split(&OpenAi, true, RESPONSES_STREAM, usage(328, 52));
    }

    #[test]
    fn reads_non_streaming_chat_responses_and_embeddings_bodies() {
        let chat = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"usage"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}"#;
        assert_usage_at_every_split(&OpenAi, false, chat, usage(19, 10));
        let responses = r#"{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123}}"#;
        assert_usage_at_every_split(&OpenAi, false, responses, usage(36, 87));
        let embeddings = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_usage_at_every_split(
            &OpenAi,
            false,
            embeddings,
            Usage {
                input_tokens: Some(8),
                output_tokens: None,
                ..Usage::default()
            },
        );
    }

    #[test]
    fn error_bodies_report_no_usage() {
        let mut scanner = UsageScanner::new(&OpenAi, false);
        scanner.feed(br#"{"error":{"message":"bad usage","type":"invalid_request_error"}}"#);
        assert_eq!(scanner.finish(), Usage::default());
    }

    #[test]
    fn reads_the_model_and_finish_reasons_of_streams_and_bodies() {
        use crate::protocol::scanner::tests::response_of;
        assert_eq!(
            response_of(&OpenAi, true, OPENAI_CHAT_STREAM),
            (
                Some("gpt-4.1-2025-04-14".to_owned()),
                vec!["tool_calls".to_owned()]
            )
        );
        let chat = r#"{"id":"c","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"finish_reason":"stop"},{"index":1,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(
            response_of(&OpenAi, false, chat),
            (
                Some("gpt-4o-mini-2024-07-18".to_owned()),
                vec!["stop".to_owned(), "length".to_owned()]
            )
        );
    }
}

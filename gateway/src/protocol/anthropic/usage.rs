//! Where Anthropic responses report usage: `message_start.message.usage` and
//! `message_delta.usage` in a stream, `usage` in a Messages body. Input counts
//! `input_tokens` plus cache creation and cache reads.

use serde::Deserialize;

use crate::protocol::usage::Usage;

/// Whether a stream's event named `event` can carry usage.
pub fn event_wanted(event: &[u8]) -> bool {
    matches!(event, b"message_start" | b"message_delta")
}

/// The usage a stream event or a whole body reports.
pub fn from_json(data: &[u8]) -> Usage {
    serde_json::from_slice::<AnthropicEvent<'_>>(data)
        .ok()
        .map(AnthropicEvent::usage)
        .unwrap_or_default()
}

/// Anthropic usage (`message_start.message.usage`, `message_delta.usage`, a Messages body).
#[derive(Debug, Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn usage(self) -> Usage {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        let input = parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum());
        Usage {
            input_tokens: input,
            output_tokens: self.output_tokens,
            ..Usage::default()
        }
    }
}

/// An Anthropic event or body: usage at the top, or in `message` (`message_start`).
/// (A Messages body, or `message_start`'s `message`, also names the model and the stop
/// reason; `message_delta` names the stop reason in `delta`.)
#[derive(Debug, Deserialize)]
struct AnthropicEvent<'a> {
    usage: Option<AnthropicUsage>,
    #[serde(borrow)]
    message: Option<AnthropicMessage<'a>>,
    #[serde(borrow)]
    model: Option<&'a str>,
    #[serde(borrow)]
    stop_reason: Option<&'a str>,
    #[serde(borrow)]
    delta: Option<AnthropicDelta<'a>>,
}

#[derive(Debug, Deserialize)]
struct AnthropicMessage<'a> {
    usage: Option<AnthropicUsage>,
    #[serde(borrow)]
    model: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(borrow)]
    stop_reason: Option<&'a str>,
}

impl AnthropicEvent<'_> {
    fn usage(self) -> Usage {
        let model = self.model.or(self.message.as_ref().and_then(|m| m.model));
        let reason = self.stop_reason.or(self.delta.and_then(|d| d.stop_reason));
        self.usage
            .or(self.message.and_then(|m| m.usage))
            .map(AnthropicUsage::usage)
            .unwrap_or_default()
            .with_response(model, [reason])
    }
}

#[cfg(test)]
mod tests {
    use crate::protocol::scanner::UsageScanner;
    use crate::protocol::scanner::tests::{assert_usage_at_every_split, usage};
    use crate::protocol::usage::Usage;

    use super::super::Anthropic;

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":7000,\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"usage is fine\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":73}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn reads_anthropic_start_and_delta_usage_at_every_split() {
        assert_usage_at_every_split(&Anthropic, true, ANTHROPIC_STREAM, usage(7012, 73));
    }

    #[test]
    fn anthropic_events_without_event_lines_are_read_by_type() {
        let unnamed: String = ANTHROPIC_STREAM
            .lines()
            .filter(|l| !l.starts_with("event:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_usage_at_every_split(&Anthropic, true, &unnamed, usage(7012, 73));
    }

    #[test]
    fn reads_a_non_streaming_message_body() {
        let message = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":2095,"cache_creation_input_tokens":5,"cache_read_input_tokens":0,"output_tokens":503}}"#;
        assert_usage_at_every_split(&Anthropic, false, message, usage(2100, 503));
    }

    #[test]
    fn error_bodies_report_no_usage() {
        let mut scanner = UsageScanner::new(&Anthropic, false);
        scanner.feed(br#"{"type":"error","error":{"type":"overloaded_error","message":"usage"}}"#);
        assert_eq!(scanner.finish(), Usage::default());
    }

    #[test]
    fn reads_the_model_and_stop_reason_of_streams_and_bodies() {
        use crate::protocol::scanner::tests::response_of;
        let expected = (
            Some("claude-sonnet-4-5-20250929".to_owned()),
            vec!["end_turn".to_owned()],
        );
        assert_eq!(response_of(&Anthropic, true, ANTHROPIC_STREAM), expected);
        let body = r#"{"id":"msg_1","type":"message","model":"claude-sonnet-4-5-20250929","stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}"#;
        assert_eq!(response_of(&Anthropic, false, body), expected);
    }
}

//! Where Gemini responses report usage: `usageMetadata` in each streamed response (SSE with
//! `alt=sse`, otherwise one JSON array) or in the body. Input counts `promptTokenCount` plus
//! `toolUsePromptTokenCount`; output `candidatesTokenCount` plus `thoughtsTokenCount`.

use serde::Deserialize;

use crate::protocol::usage::Usage;

/// The usage one streamed event reports.
pub fn from_event(data: &[u8]) -> Usage {
    serde_json::from_slice::<GeminiBody<'_>>(data)
        .ok()
        .map(GeminiBody::usage)
        .unwrap_or_default()
}

/// The usage a complete body reports (a JSON-array stream: the last report of each figure
/// wins).
pub fn from_body(body: &[u8]) -> Usage {
    match serde_json::from_slice::<GeminiBodies<'_>>(body) {
        Ok(GeminiBodies::One(b)) => b.usage(),
        Ok(GeminiBodies::Many(all)) => {
            let mut usage = Usage::default();
            for b in all {
                usage.update(b.usage());
            }
            usage
        }
        Err(_) => Usage::default(),
    }
}

/// Gemini `usageMetadata`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    prompt_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl GeminiUsage {
    fn usage(self) -> Usage {
        let sum = |a: Option<u64>, b: Option<u64>| a.map(|a| a + b.unwrap_or(0));
        Usage {
            input_tokens: sum(self.prompt_token_count, self.tool_use_prompt_token_count),
            output_tokens: sum(self.candidates_token_count, self.thoughts_token_count)
                .or(self.thoughts_token_count),
            ..Usage::default()
        }
    }
}

/// A Gemini response (or stream element).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiBody<'a> {
    usage_metadata: Option<GeminiUsage>,
    #[serde(borrow)]
    model_version: Option<&'a str>,
    #[serde(default, borrow)]
    candidates: Vec<GeminiCandidate<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiCandidate<'a> {
    #[serde(borrow)]
    finish_reason: Option<&'a str>,
}

impl GeminiBody<'_> {
    fn usage(self) -> Usage {
        self.usage_metadata
            .map(GeminiUsage::usage)
            .unwrap_or_default()
            .with_response(
                self.model_version,
                self.candidates.iter().map(|c| c.finish_reason),
            )
    }
}

/// A Gemini JSON body: one response, or the array a non-SSE stream sends.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum GeminiBodies<'a> {
    #[serde(borrow)]
    One(GeminiBody<'a>),
    Many(Vec<GeminiBody<'a>>),
}

#[cfg(test)]
mod tests {
    use crate::protocol::scanner::UsageScanner;
    use crate::protocol::scanner::tests::{assert_usage_at_every_split, usage};
    use crate::protocol::usage::Usage;

    use super::super::Gemini;

    const GEMINI_SSE: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" end\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 20,\"totalTokenCount\": 129,\"thoughtsTokenCount\": 100},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    );

    #[test]
    fn reads_gemini_sse_last_usage_metadata_at_every_split() {
        assert_usage_at_every_split(&Gemini, true, GEMINI_SSE, usage(9, 120));
    }

    #[test]
    fn reads_gemini_json_array_stream_last_element() {
        let array = format!(
            "[{},\r\n{}]",
            GEMINI_SSE
                .split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .trim_start_matches("data: "),
            GEMINI_SSE
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("")
                .trim_start_matches("data: ")
        );
        assert_usage_at_every_split(&Gemini, false, &array, usage(9, 120));
    }

    #[test]
    fn reads_a_non_streaming_body() {
        let gemini = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}"#;
        assert_usage_at_every_split(&Gemini, false, gemini, usage(4, 2));
    }

    #[test]
    fn garbage_reports_no_usage() {
        let mut scanner = UsageScanner::new(&Gemini, false);
        scanner.feed("\u{1f}\u{8b} not json usage".as_bytes());
        assert_eq!(scanner.finish(), Usage::default());
    }

    #[test]
    fn reads_the_model_version_and_finish_reason() {
        use crate::protocol::scanner::tests::response_of;
        assert_eq!(
            response_of(&Gemini, true, GEMINI_SSE),
            (Some("gemini-2.5-flash".to_owned()), vec!["STOP".to_owned()])
        );
    }
}

//! The usual test setup in one value: a fake upstream, Warden routing to it, and an agent
//! token Warden issued.

use serde_json::Value;
use std::time::Duration;

use crate::fake_llm::{FakeLlm, RecordedRequest};
use crate::warden::{Prepared, Warden, WardenBuilder};

/// Agent id of the token every [`Stack`] carries.
pub const AGENT: &str = "e2e-agent";

/// A fake upstream, Warden in front of it, and a Warden token for [`AGENT`].
#[derive(Debug)]
pub struct Stack {
    pub fake: FakeLlm,
    pub warden: Warden,
    pub token: String,
}

impl Stack {
    /// The default setup: every model permitted.
    pub async fn start() -> anyhow::Result<Stack> {
        Stack::start_with(|b| b).await
    }

    /// The default setup changed by `customize` before Warden starts.
    pub async fn start_with(
        customize: impl FnOnce(WardenBuilder) -> WardenBuilder,
    ) -> anyhow::Result<Stack> {
        let fake = FakeLlm::start().await?;
        let warden = customize(WardenBuilder::new(&fake)).start().await?;
        let token = warden.token(AGENT).await?;
        Ok(Stack {
            fake,
            warden,
            token,
        })
    }

    /// Starts Warden on `setup` (written, maybe edited since) in front of `fake`, and issues
    /// the agent's token.
    pub async fn spawn(fake: FakeLlm, setup: Prepared) -> anyhow::Result<Stack> {
        let mut warden = setup.spawn()?;
        warden.wait_ready(Duration::from_secs(30)).await?;
        let token = warden.token(AGENT).await?;
        Ok(Stack {
            fake,
            warden,
            token,
        })
    }

    /// `http://<proxy>/openai`: an OpenAI SDK `base_url`.
    pub fn openai_base(&self) -> String {
        self.warden.url("/openai")
    }

    /// `http://<proxy>/anthropic`: an Anthropic SDK `base_url`.
    pub fn anthropic_base(&self) -> String {
        self.warden.url("/anthropic")
    }

    /// `http://<proxy>/gemini`.
    pub fn gemini_base(&self) -> String {
        self.warden.url("/gemini")
    }

    /// POSTs `body` to the proxy at `path` with the agent token as `Authorization: Bearer`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .warden
            .http()
            .post(self.warden.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?)
    }

    /// The requests the fake upstream received, waiting up to 5 s for at least `n`.
    pub async fn upstream_requests(&self, n: usize) -> Vec<RecordedRequest> {
        self.fake.wait_for_requests(n, Duration::from_secs(5)).await
    }

    /// Waits for the audit record of kind `kind` matching `pred`.
    pub async fn audit(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        self.warden
            .wait_for_audit(Duration::from_secs(10), |r| r["kind"] == kind && pred(r))
            .await
    }

    /// Sends `body` to `path` as the agent over a connection of its own, which the caller
    /// drops to leave before the answer.
    pub async fn call_to_leave(&self, path: &str, body: &Value) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let body = serde_json::to_vec(body).unwrap();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.token,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let mut agent = tokio::net::TcpStream::connect(self.warden.setup.proxy)
            .await
            .unwrap();
        agent.write_all(&request).await.unwrap();
        agent
    }

    /// The US dollars [`AGENT`] spent today (`warden_budget_spent_usd`).
    pub async fn spent_usd_today(&self) -> f64 {
        let metrics = self.warden.metrics().await.unwrap();
        metrics
            .lines()
            .find(|l| {
                l.starts_with("warden_budget_spent_usd{")
                    && l.contains(&format!("name=\"{AGENT}\""))
                    && l.contains("period=\"day\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("the agent's spend: {metrics}"))
    }
}

/// A policy that forbids `openai/gpt-4.1` (`e2e-forbid-gpt41`, reason "no gpt-4.1"): a deny
/// to provoke beside the stack's allows.
pub const FORBID_GPT41: &str = "@id(\"e2e-forbid-gpt41\")\n@reason(\"no gpt-4.1\")\nforbid (principal, action, resource == Model::\"openai/gpt-4.1\");\n";

/// A chat (gpt-4o-mini, not streamed) through `warden` as `token`: its status and body
/// (`null` when not JSON).
pub async fn chat(warden: &Warden, token: &str) -> (u16, Value) {
    let response = send_chat(warden, token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends a minimal OpenAI chat with `gpt-4o-mini` to `warden`'s `openai` route as `token`
/// (`Authorization: Bearer`): the response.
pub async fn send_chat(warden: &Warden, token: &str) -> reqwest::Response {
    warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
}

/// Sends a minimal Anthropic message to `claude-sonnet-4-5` to `warden`'s `anthropic` route as
/// `token` (`x-api-key`, as Anthropic's SDK sends it): the response.
pub async fn send_message(warden: &Warden, token: &str) -> reqwest::Response {
    warden
        .http()
        .post(warden.url("/anthropic/v1/messages"))
        .header("x-api-key", token)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_messages("claude-sonnet-4-5", false))
        .send()
        .await
        .unwrap()
}

/// A minimal OpenAI chat request body.
pub fn openai_chat(model: &str, stream: bool) -> Value {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "stream": stream,
    });
    if stream {
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body
}

/// A minimal Anthropic messages request body.
pub fn anthropic_messages(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "stream": stream,
    })
}

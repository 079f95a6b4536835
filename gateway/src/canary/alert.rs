//! Announcing a canary hit: a JSON POST to `canaries.alert.url`, off the request path. Each hit
//! is queued (bounded; a full queue drops the alert, counts and logs it: the hit itself is
//! already denied and recorded) and posted by a task of its own with up to
//! `canaries.alert.attempts` tries and doubling waits.

use std::time::Duration;

use prometheus::IntCounterVec;
use serde_json::Value;
use tokio::sync::mpsc;

use super::config::AlertConfig;

/// Alerts waiting to be posted, at most.
const QUEUE: usize = 256;
/// The first wait between tries; it doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The queue alerts are handed to.
#[derive(Clone)]
pub(super) struct Alerter {
    tx: mpsc::Sender<Value>,
    outcomes: IntCounterVec,
}

impl Alerter {
    /// Starts the task that posts alerts per `config`; `outcomes` counts them by result.
    pub(super) fn start(config: &AlertConfig, outcomes: IntCounterVec) -> Result<Alerter, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the canary alert HTTP client: {e}"))?;
        let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
        let (url, attempts) = (config.url.clone(), config.attempts.max(1));
        let counted = outcomes.clone();
        tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                let result = post(&client, &url, &alert, attempts).await;
                counted.with_label_values(&[result]).inc();
            }
        });
        Ok(Alerter { tx, outcomes })
    }

    /// Queues `alert`; never waits.
    pub(super) fn send(&self, alert: Value) {
        if self.tx.try_send(alert).is_err() {
            self.outcomes.with_label_values(&["dropped"]).inc();
            tracing::warn!(
                "canary alert dropped: the alert queue is full (the hit is denied and recorded)"
            );
        }
    }
}

/// Posts `alert` with up to `attempts` tries; `delivered` or `failed`.
async fn post(client: &reqwest::Client, url: &str, alert: &Value, attempts: u32) -> &'static str {
    let mut wait = FIRST_BACKOFF;
    for attempt in 1..=attempts {
        let error = match client.post(url).json(alert).send().await {
            Ok(response) if response.status().is_success() => return "delivered",
            Ok(response) if response.status().is_client_error() && response.status() != 429 => {
                tracing::warn!(status = %response.status(), "canary alert refused by the webhook; not trying again");
                return "failed";
            }
            Ok(response) => format!("status {}", response.status()),
            Err(e) => e.without_url().to_string(),
        };
        if attempt == attempts {
            tracing::warn!(%error, attempts, canary = %alert["canary"]["id"], "canary alert not delivered; giving up");
            break;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    "failed"
}

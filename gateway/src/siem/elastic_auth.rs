//! How Warden authenticates to an Elasticsearch or OpenSearch cluster (`_bulk` deliveries in
//! `elastic.rs`, the index template in `elastic_template.rs`).

use super::http::Secret;

/// How Warden authenticates to the cluster.
pub enum Auth {
    None,
    ApiKey(Secret),
    Basic { username: String, password: Secret },
}

impl Auth {
    /// Adds the credential to `request`.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => request,
            Auth::ApiKey(key) => request.header("authorization", format!("ApiKey {}", key.value())),
            Auth::Basic { username, password } => {
                request.basic_auth(username, Some(password.value()))
            }
        }
    }

    /// Reads the credential again (after the cluster refused it).
    pub(super) async fn refresh(&mut self) {
        match self {
            Auth::None => {}
            Auth::ApiKey(key) => key.refresh().await,
            Auth::Basic { password, .. } => password.refresh().await,
        }
    }
}

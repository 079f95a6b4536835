//! The console's HTTP client for its OpenID Provider (discovery, keys, token, userinfo): every
//! answer read to at most [`MAX_ANSWER_BYTES`], so a provider that answers gigabytes fails a
//! sign-in instead of filling Warden's memory. (The `openidconnect` client for `reqwest`
//! reads an answer whole, however large.)

use std::future::Future;
use std::pin::Pin;

use openidconnect::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};

use crate::bounded_body::{self, BoundedBodyError};

/// The largest answer read from the provider, as for an agent issuer's JWKS.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A `reqwest` client whose answers are bounded.
#[derive(Debug, Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    max: usize,
}

impl ProviderHttp {
    /// `client`, its answers read to at most [`MAX_ANSWER_BYTES`].
    pub fn new(client: reqwest::Client) -> ProviderHttp {
        ProviderHttp {
            client,
            max: MAX_ANSWER_BYTES,
        }
    }

    async fn send(
        &self,
        request: HttpRequest,
    ) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
        let request: reqwest::Request = request.try_into().map_err(Box::new)?;
        let url = request.url().clone();
        let mut response = self.client.execute(request).await.map_err(Box::new)?;
        let too_large = || {
            HttpClientError::Other(format!(
                "{url} answered more than {} bytes; Warden reads at most that much",
                self.max
            ))
        };
        let mut answer = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let body = bounded_body::read_to(&mut response, self.max)
            .await
            .map_err(|e| match e {
                BoundedBodyError::TooLarge { .. } => too_large(),
                BoundedBodyError::Transport(e) => HttpClientError::Reqwest(Box::new(e)),
            })?;
        answer.body(body).map_err(HttpClientError::Http)
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one request with `head` and then `body_bytes` bytes of spaces,
    /// written as fast as they are read.
    async fn server(head: String, body_bytes: usize) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut left = body_bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if socket.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        addr
    }

    fn request(addr: std::net::SocketAddr) -> HttpRequest {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/token"))
            .body(b"grant_type=authorization_code".to_vec())
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_bound_is_refused_before_it_is_read_whole() {
        let http = ProviderHttp::new(reqwest::Client::new());
        let size = 64 * 1024 * 1024;
        // Announced too large; then unannounced (read until the connection closes).
        for length in [format!("content-length: {size}\r\n"), String::new()] {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n");
            let err = http
                .call(request(server(head, size).await))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("answered more than 1048576 bytes"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_within_the_bound_is_read_whole() {
        let http = ProviderHttp::new(reqwest::Client::new());
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
        let answer = http
            .call(request(server(head.to_owned(), 1000).await))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.body().len(), 1000);
        assert_eq!(answer.headers()["content-type"], "application/json");
    }
}

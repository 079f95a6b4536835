//! Dialling a checked destination: its judged addresses, in order, and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::Destination;
use super::error::EgressError;

/// A connection to the first of `dest`'s addresses that accepts one within `timeout` (for
/// them all).
pub async fn dial(dest: &Destination, timeout: Duration) -> Result<TcpStream, EgressError> {
    let host = dest.host.cedar_name();
    let attempt = async {
        let mut last = None;
        for ip in &dest.addresses {
            match TcpStream::connect(SocketAddr::new(*ip, dest.port)).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(format!("{ip}: {e}")),
            }
        }
        Err(EgressError::Connect {
            host: host.clone(),
            port: dest.port,
            reason: last.unwrap_or_else(|| "no address".to_owned()),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| EgressError::ConnectTimeout {
            host: host.clone(),
            port: dest.port,
        })?
}

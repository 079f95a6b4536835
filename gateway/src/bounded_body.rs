//! An HTTP answer from a dependency read whole, to a bound: what Warden reads from an identity
//! provider (its documents and keys, the console's token and userinfo answers) is never read
//! past `max` bytes, whatever length the answer announces or however much it sends.

/// Why an answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum BoundedBodyError {
    /// It announced, or sent, more than the bound.
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
    /// The connection failed while it was read.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// `response`'s body, refused as soon as it announces or sends more than `max` bytes.
pub async fn read_to(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BoundedBodyError> {
    let too_large = BoundedBodyError::TooLarge { max };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

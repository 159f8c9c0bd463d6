//! Reads a request body while counting its bytes. Never trusts
//! `Content-Length`: the Functions host sends chunked bodies without one, and
//! warp's `content_length_limit` would answer those with 411.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::intake::error::ForwardError;

/// Collects the body, failing with 413 as soon as it passes `limit` bytes
/// (the rest is never read, so an oversized body costs at most `limit`).
pub async fn read_limited<S, B>(body: S, limit: usize) -> Result<Bytes, ForwardError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| ForwardError::BodyUnreadable(e.to_string()))?;
        if collected.len().saturating_add(chunk.remaining()) > limit {
            return Err(ForwardError::BodyTooLarge { limit });
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            collected.extend_from_slice(piece);
            let read = piece.len();
            chunk.advance(read);
        }
    }
    Ok(collected.freeze())
}

/// Marks `response` as the connection's last: after a body that was not
/// read to its end, the connection cannot carry another request. Without the
/// header a client may reuse it in the instant before it is closed, and its
/// next request then fails without an answer.
pub fn closing_connection(mut response: warp::reply::Response) -> warp::reply::Response {
    response.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, warp::Error>> {
        stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn chunks_are_joined_in_order() {
        let body = read_limited(chunks(&[b"ab", b"", b"cd"]), 4).await.unwrap();
        assert_eq!(&body[..], b"abcd");
    }

    #[tokio::test]
    async fn one_byte_over_the_limit_is_413() {
        let err = read_limited(chunks(&[b"ab", b"cde"]), 4).await.unwrap_err();
        assert!(matches!(err, ForwardError::BodyTooLarge { limit: 4 }));
    }
}

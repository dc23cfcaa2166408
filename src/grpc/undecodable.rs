//! Requests whose body does not decode are the caller's fault: tonic answers them `INTERNAL`
//! (as gRPC's own status guide suggests), which looks like a server fault and is logged as one.
//! This layer answers them `INVALID_ARGUMENT` instead, before any log or metric sees them.
//!
//! tonic reports them as a trailers-only response with one of the messages below; a handler's
//! own `INTERNAL` says "internal error" and is left alone.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderValue;

/// The beginnings of the messages tonic and prost give a request that does not decode.
const DECODE_FAILURES: [&str; 5] = [
    "failed to decode Protobuf message",
    "protocol error: received message with",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "Error decompressing",
];

const INTERNAL: &str = "13";
const INVALID_ARGUMENT: HeaderValue = HeaderValue::from_static("3");

/// See the module documentation.
#[derive(Clone, Copy, Default)]
pub struct UndecodableLayer;

impl<S> tower::Layer<S> for UndecodableLayer {
    type Service = Undecodable<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Undecodable { inner }
    }
}

/// See [`UndecodableLayer`].
#[derive(Clone)]
pub struct Undecodable<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Undecodable<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = UndecodableFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        UndecodableFuture {
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Undecodable`].
    pub struct UndecodableFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, ResBody, E> Future for UndecodableFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.project().inner.poll(cx))?;
        let headers = response.headers_mut();
        if headers.get("grpc-status").is_some_and(|it| it == INTERNAL)
            && headers
                .get("grpc-message")
                .and_then(|it| it.to_str().ok())
                .is_some_and(is_decode_failure)
        {
            headers.insert("grpc-status", INVALID_ARGUMENT);
        }
        Poll::Ready(Ok(response))
    }
}

/// Whether a (percent-encoded) grpc-message is one tonic gives a body that does not decode.
fn is_decode_failure(message: &str) -> bool {
    // grpc-message is percent-encoded: spaces arrive as "%20".
    let message = message.replace("%20", " ");
    DECODE_FAILURES
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_tonics_decode_failures_and_not_a_handlers_internal_error() {
        assert!(is_decode_failure(
            "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type"
        ));
        assert!(is_decode_failure(
            "protocol error: received message with invalid compression flag: 7"
        ));
        assert!(!is_decode_failure("internal%20error"));
    }
}

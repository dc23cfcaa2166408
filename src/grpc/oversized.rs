//! Requests whose headers pass `port.max_header_bytes` fail alone with RESOURCE_EXHAUSTED.
//!
//! HTTP/2 (the h2 crate) refuses an oversized header block by itself only when the block came
//! in one frame; split over CONTINUATION frames (16 KiB each by default), a block over its
//! limit closes the whole connection, and every other call on it fails. So h2 is given a
//! larger limit ([`H2_HEADER_FACTOR`] times this one, still a memory bound; it also allows as
//! many CONTINUATION frames as that needs) and the limit the operator set is enforced here,
//! per request. The frame size stays HTTP/2's default: h2 allows fewer CONTINUATION frames
//! the larger its frames, which would cut off clients that send 16 KiB frames anyway.

use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;

/// How much larger than `port.max_header_bytes` the HTTP/2 header list limit is.
pub const H2_HEADER_FACTOR: u32 = 4;

/// The size of a header list as HTTP/2 counts it: names, values and 32 bytes per field.
fn header_list_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// See the module documentation.
#[derive(Clone, Copy)]
pub struct OversizedLayer {
    pub max_header_bytes: usize,
}

impl<S> tower::Layer<S> for OversizedLayer {
    type Service = Oversized<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversized {
            inner,
            max_header_bytes: self.max_header_bytes,
        }
    }
}

/// See [`OversizedLayer`].
#[derive(Clone)]
pub struct Oversized<S> {
    inner: S,
    max_header_bytes: usize,
}

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for Oversized<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let size = header_list_size(request.headers());
        if size > self.max_header_bytes {
            let status = Status::resource_exhausted(format!(
                "the request headers are {size} bytes, over the limit of {} (port.max_header_bytes)",
                self.max_header_bytes
            ));
            return Either::Left(ready(Ok(status.into_http())));
        }
        Either::Right(self.inner.call(request))
    }
}

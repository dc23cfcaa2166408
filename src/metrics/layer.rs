//! A tower layer counting finished gRPC calls by method and status code: the status is in the
//! trailers (or in the headers of a trailers-only error response).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame};

use crate::metrics::Metrics;

/// A tower layer counting finished gRPC calls by method and status code.
#[derive(Clone)]
pub struct RpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// See [`RpcMetricsLayer`].
#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let pending = Some((request.uri().path().to_owned(), Arc::clone(&self.metrics)));
        CountedFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RpcMetricsService`].
    pub struct CountedFuture<F> {
        #[pin]
        inner: F,
        pending: Option<(String, Arc<Metrics>)>,
    }
}

impl<F, ResBody, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<CountedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let mut pending = this.pending.take();
        // A trailers-only response (an error) carries its status in the headers.
        if let Some(status) = response.headers().get("grpc-status")
            && let Some((rpc, metrics)) = pending.take()
        {
            metrics.record_rpc(rpc, Some(status));
        }
        Poll::Ready(Ok(response.map(|inner| CountedBody { inner, pending })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its call when the trailers carry the status.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        pending: Option<(String, Arc<Metrics>)>,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(trailers) = frame.trailers_ref()
            && let Some((rpc, metrics)) = this.pending.take()
        {
            metrics.record_rpc(rpc, trailers.get("grpc-status"));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

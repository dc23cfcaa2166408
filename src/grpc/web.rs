//! The browser path: gRPC-web translation and CORS, for the requests that need them. A request
//! from a browser (it names an `Origin`), a gRPC-web request, or a CORS preflight goes through
//! both; every other request (plain gRPC from a service, Authorize above all) skips them, and
//! with them a body conversion and extra response headers on each call.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, ORIGIN};
use http::{HeaderValue, Method, Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// Adds gRPC-web and CORS (for `origins`) to the requests that come from browsers.
#[derive(Clone)]
pub struct BrowserLayer {
    cors: CorsLayer,
}

impl BrowserLayer {
    /// Returns the layer, allowing calls from `origins` (none if empty).
    pub fn new(origins: &[HeaderValue]) -> Self {
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                CONTENT_TYPE,
                AUTHORIZATION,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
                HeaderName::from_static("grpc-status-details-bin"),
            ])
            .max_age(Duration::from_secs(24 * 60 * 60));
        Self { cors }
    }
}

impl<S: Clone> Layer<S> for BrowserLayer {
    type Service = Browser<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let web = self
            .cors
            .layer(tonic_web::GrpcWebLayer::new().layer(inner.clone()));
        Browser { plain: inner, web }
    }
}

/// See [`BrowserLayer`].
#[derive(Clone)]
pub struct Browser<S> {
    plain: S,
    web: Cors<tonic_web::GrpcWebService<S>>,
}

/// Returns true if `request` needs the browser path.
fn from_browser<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        || request.headers().contains_key(ORIGIN)
        || request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|it| it.as_bytes().starts_with(b"application/grpc-web"))
}

impl<S> Service<Request<Body>> for Browser<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
    Cors<tonic_web::GrpcWebService<S>>:
        Service<Request<Body>, Response = Response<Body>, Error = S::Error>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future =
        Either<S::Future, <Cors<tonic_web::GrpcWebService<S>> as Service<Request<Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.plain.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.web.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if from_browser(&request) {
            Either::Right(self.web.call(request))
        } else {
            Either::Left(self.plain.call(request))
        }
    }
}

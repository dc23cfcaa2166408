//! The listening port's own defences: a cap on open connections, and deadlines on connections
//! that carry no call.
//!
//! Every accepted socket is wrapped in a [`Guarded`] stream that holds one of `max_connections`
//! permits and a deadline: a connection must start its first call within `handshake_timeout`
//! (TLS handshake, HTTP/2 preface and the first request's headers, or HTTP/1.1's request line
//! and headers), and a connection with no call in flight is closed after `idle_timeout` (which
//! also bounds reading the headers of a later request). Calls are counted per connection by
//! [`ActivityLayer`], which finds the connection's [`Activity`] in the request's extensions
//! (tonic puts [`PortInfo`] there). Keep-alive pings, stream caps, header limits and the request
//! time-out are hyper's and tonic's, set in `app`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http_body::{Body, Frame};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tracing::debug;

/// The connection limits of the port.
#[derive(Debug, Clone)]
pub struct PortLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub tcp_keepalive: Duration,
}

/// What the port counts: connections open now, and connections refused at the cap.
#[derive(Clone, Default)]
pub struct PortMetrics {
    pub open: Gauge,
    pub refused: Counter,
}

/// Accepts connections on `listener` while fewer than `max_connections` are open; one beyond
/// the cap is closed at once (and counted), so the kernel's backlog never fills with clients
/// that wait for nothing.
pub fn incoming(
    listener: TcpListener,
    limits: PortLimits,
    metrics: PortMetrics,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Every accepted connection sends at once: without TCP_NODELAY, Nagle's algorithm meets the
    // client's delayed ACKs and a small response can wait 40 ms.
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.tcp_keepalive))
        .filter_map(move |accepted| {
            let admitted = match accepted {
                Ok(stream) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => Some(Ok(Guarded::new(stream, permit, &limits, &metrics))),
                    Err(_) => {
                        metrics.refused.inc();
                        debug!("connection refused: the connection cap is reached");
                        None
                    }
                },
                // tonic logs and goes on (a client that reset before accept, out of files).
                Err(err) => Some(Err(err)),
            };
            std::future::ready(admitted)
        })
}

/// What one connection is doing, shared by its stream and the calls it carries.
#[derive(Debug)]
pub struct Activity {
    /// When the connection was accepted.
    accepted: Instant,
    /// Calls in flight (a streaming call counts until its response body is dropped).
    calls: AtomicU32,
    /// Whether a call ever started on it.
    started: AtomicBool,
    /// When the last call ended, in milliseconds after `accepted`.
    idle_since_millis: AtomicU64,
    /// Raised whenever a call starts or ends, so the reader recomputes its deadline only then.
    changes: AtomicU32,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            calls: AtomicU32::new(0),
            started: AtomicBool::new(false),
            idle_since_millis: AtomicU64::new(0),
            changes: AtomicU32::new(0),
        }
    }

    /// Returns when the connection must be closed if nothing changes, or `None` while a call is
    /// in flight.
    fn deadline(&self, limits: &Deadlines) -> Option<Instant> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.started.load(Ordering::Acquire) {
            return Some(self.accepted + limits.handshake);
        }
        let idle_since = Duration::from_millis(self.idle_since_millis.load(Ordering::Acquire));
        Some(self.accepted + idle_since + limits.idle)
    }

    fn call_started(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        self.started.store(true, Ordering::Release);
        self.changes.fetch_add(1, Ordering::Release);
        CallGuard(Arc::clone(self))
    }
}

/// Ends a call on its connection when dropped.
#[derive(Debug)]
struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let millis = u64::try_from(self.0.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_millis.fetch_max(millis, Ordering::AcqRel);
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
        self.0.changes.fetch_add(1, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy)]
struct Deadlines {
    handshake: Duration,
    idle: Duration,
}

/// The connection information tonic puts in every request's extensions (inside
/// `TlsConnectInfo` when the port serves TLS).
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub tcp: TcpConnectInfo,
    activity: Arc<Activity>,
}

/// An accepted connection under the port's cap and deadlines.
pub struct Guarded<IO> {
    inner: IO,
    timer: Pin<Box<Sleep>>,
    activity: Arc<Activity>,
    /// `activity.changes` when the timer was last set.
    seen_changes: u32,
    deadlines: Deadlines,
    open: Gauge,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Guarded<TcpStream> {
    fn new(
        inner: TcpStream,
        permit: OwnedSemaphorePermit,
        limits: &PortLimits,
        metrics: &PortMetrics,
    ) -> Self {
        metrics.open.inc();
        let activity = Arc::new(Activity::new());
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep_until(
                activity.accepted + limits.handshake_timeout,
            )),
            activity,
            seen_changes: 0,
            deadlines: Deadlines {
                handshake: limits.handshake_timeout,
                idle: limits.idle_timeout,
            },
            open: metrics.open.clone(),
            _permit: permit,
        }
    }
}

impl Connected for Guarded<TcpStream> {
    type ConnectInfo = PortInfo;

    fn connect_info(&self) -> PortInfo {
        PortInfo {
            tcp: self.inner.connect_info(),
            activity: Arc::clone(&self.activity),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        // The server always waits to read while a connection is open, so the deadline is
        // checked here: set again when a call started or ended since, and checked when the
        // timer fires (which wakes this task).
        let changes = this.activity.changes.load(Ordering::Acquire);
        if changes != this.seen_changes {
            this.seen_changes = changes;
            this.set_timer()?;
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            this.set_timer()?;
        }
        Poll::Pending
    }
}

impl<IO> Guarded<IO> {
    /// Sets the timer to the connection's deadline; an error once it has passed.
    fn set_timer(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let deadline = match self.activity.deadline(&self.deadlines) {
            Some(deadline) if deadline <= now => {
                debug!("closing a connection that carried no call in time");
                return Err(io::ErrorKind::TimedOut.into());
            }
            Some(deadline) => deadline,
            // Checked again once the calls in flight could have ended.
            None if self.timer.deadline() > now => self.timer.deadline(),
            None => now + self.deadlines.idle,
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        Ok(())
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Whether the request came with a client certificate (verified at the handshake).
pub fn has_client_certificate(extensions: &http::Extensions) -> bool {
    extensions
        .get::<tonic::transport::server::TlsConnectInfo<PortInfo>>()
        .and_then(tonic::transport::server::TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

fn port_info(extensions: &http::Extensions) -> Option<&PortInfo> {
    extensions.get::<PortInfo>().or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<PortInfo>>()
            .map(tonic::transport::server::TlsConnectInfo::get_ref)
    })
}

/// A tower layer counting the calls in flight on each connection, so idle connections can be
/// told from busy ones.
#[derive(Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService { inner }
    }
}

/// See [`ActivityLayer`].
#[derive(Clone)]
pub struct ActivityService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ActivityService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<ActiveBody<ResBody>>;
    type Error = S::Error;
    type Future = ActiveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let guard = port_info(request.extensions()).map(|info| info.activity.call_started());
        ActiveFuture {
            inner: self.inner.call(request),
            guard,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ActivityService`].
    pub struct ActiveFuture<F> {
        #[pin]
        inner: F,
        guard: Option<CallGuard>,
    }
}

impl<F, ResBody, E> Future for ActiveFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<ActiveBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| ActiveBody {
            inner,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted until it is dropped.
    pub struct ActiveBody<B> {
        #[pin]
        inner: B,
        _guard: Option<CallGuard>,
    }
}

impl<B: Body> Body for ActiveBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

//! Raw HTTP/2 calls, for what a well-behaved gRPC client never sends.
#![allow(dead_code)] // Not every test target sends raw calls.

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Opens a raw HTTP/2 connection; the task ends when the server closes it.
pub async fn h2_connect(
    addr: impl tokio::net::ToSocketAddrs,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("handshake");
    let closed = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    (send, closed)
}

/// Sends one gRPC call over a raw HTTP/2 connection and returns its grpc-status (or the
/// HTTP/2 error that ended the stream).
pub async fn raw_call(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<u32, h2::Error> {
    let mut request = http::Request::post(format!("http://privint{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(()).expect("request");
    let mut send = send.clone().ready().await?;
    let (response, mut stream) = send.send_request(request, false)?;
    stream.send_data(body, true)?;
    let response = response.await?;
    let status = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|it| it.to_str().ok()?.parse().ok())
    };
    if let Some(code) = status(response.headers()) {
        return Ok(code);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok(status(&trailers).expect("a grpc-status"))
}

/// Sends an empty health check over a raw HTTP/2 connection; returns its grpc-status.
pub async fn raw_health_check(send: &mut h2::client::SendRequest<Bytes>) -> Result<u32, h2::Error> {
    let empty = Bytes::from_static(&[0, 0, 0, 0, 0]);
    raw_call(send, "/grpc.health.v1.Health/Check", &[], empty).await
}

//! gRPC-web over HTTP/1.1 with CORS, as a browser's management UI uses it.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{Backend, LOCATION, TestApp, create};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use privint::grpc::pb;
use prost::Message;

const ORIGIN: &str = "https://admin.example.com";

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + encoded.len());
    body.put_u8(0);
    body.put_u32(encoded.len() as u32);
    body.put_slice(&encoded);
    body.freeze()
}

/// Splits a gRPC-web response body into its data message and its trailer text.
fn unframe(mut body: Bytes) -> (Option<Bytes>, String) {
    let (mut data, mut trailers) = (None, String::new());
    while body.has_remaining() {
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        let payload = body.split_to(length);
        if flag & 0x80 == 0 {
            data = Some(payload);
        } else {
            trailers = String::from_utf8(payload.to_vec()).expect("trailers are text");
        }
    }
    (data, trailers)
}

#[tokio::test]
async fn authorize_over_grpc_web_http1() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let (_, token) = create(&mut app.api().await).await;
    let request = pb::AuthorizeRequest {
        token,
        required_scopes: vec!["contacts.readonly".to_owned()],
        location_id: LOCATION.to_owned(),
        ..Default::default()
    };
    let http_request = http::Request::post(format!(
        "http://{}/privint.v1.TokenAuthorizer/Authorize",
        app.addr
    ))
    .version(http::Version::HTTP_11)
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("origin", ORIGIN)
    .body(Full::new(frame(&request)))
    .expect("request");
    let response = client()
        .request(http_request)
        .await
        .expect("HTTP/1.1 answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .expect("text")
        .to_owned();
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(header), "{exposed}");
    }
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let (data, trailers) = unframe(body);
    let answer = pb::AuthorizeResponse::decode(data.expect("a message")).expect("decodes");
    assert_eq!(answer.decision(), pb::Decision::Allow);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

#[tokio::test]
async fn management_over_grpc_web_needs_a_jwt() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let call = |authorization: Option<String>| {
        let mut builder = http::Request::post(format!(
            "http://{}/privint.v1.IntegrationService/ListScopes",
            app.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("origin", ORIGIN);
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        builder
            .body(Full::new(frame(&pb::ListScopesRequest::default())))
            .expect("request")
    };
    let response = client().request(call(None)).await.expect("answer");
    assert_eq!(
        response.headers()["grpc-status"],
        "16",
        "UNAUTHENTICATED in a trailers-only response"
    );
    let jwt = common::jwt(common::user("agency_admin", common::AGENCY, &[], None));
    let response = client()
        .request(call(Some(format!("Bearer {jwt}"))))
        .await
        .expect("answer");
    let (data, trailers) = unframe(
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    );
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let scopes = pb::ListScopesResponse::decode(data.expect("message"))
        .expect("decodes")
        .scopes;
    assert!(scopes.iter().any(|scope| scope.name == "contacts.readonly"));
}

fn preflight(addr: &str, origin: &str) -> http::Request<Full<Bytes>> {
    http::Request::options(format!(
        "http://{addr}/privint.v1.IntegrationService/ListIntegrations"
    ))
    .header("origin", origin)
    .header("access-control-request-method", "POST")
    .header(
        "access-control-request-headers",
        "content-type,x-grpc-web,authorization",
    )
    .body(Full::new(Bytes::new()))
    .expect("request")
}

/// The origin a preflight from `origin` is allowed for, if any.
async fn allowed_origin(addr: &str, origin: &str) -> Option<String> {
    let response = client()
        .request(preflight(addr, origin))
        .await
        .expect("answer");
    let allowed = response.headers().get("access-control-allow-origin")?;
    Some(allowed.to_str().expect("text").to_owned())
}

// Regression: APP__CORS_ALLOWED_ORIGINS=https://a.example was refused at start ("expected a
// sequence"): list settings take a comma-separated list from the environment.
#[tokio::test]
async fn cors_origins_from_the_environment() {
    let server = common::Binary::start(&[(
        "APP__CORS_ALLOWED_ORIGINS",
        "https://a.example, https://b.example",
    )]);
    for origin in ["https://a.example", "https://b.example"] {
        assert_eq!(
            allowed_origin(&server.addr, origin).await.as_deref(),
            Some(origin)
        );
    }
    assert_eq!(allowed_origin(&server.addr, ORIGIN).await, None);
    server.stop();
    let one = common::Binary::start(&[("APP__CORS_ALLOWED_ORIGINS", "https://a.example")]);
    assert_eq!(
        allowed_origin(&one.addr, "https://a.example")
            .await
            .as_deref(),
        Some("https://a.example")
    );
}

#[tokio::test]
async fn cors_preflight() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let addr = app.addr.to_string();
    let response = client()
        .request(preflight(&addr, ORIGIN))
        .await
        .expect("answer");
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .expect("text")
            .contains("POST")
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .expect("text")
        .to_ascii_lowercase();
    for header in ["content-type", "x-grpc-web", "authorization"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(
        allowed_origin(&addr, "https://evil.example.com").await,
        None,
        "an unknown origin is not allowed"
    );
}

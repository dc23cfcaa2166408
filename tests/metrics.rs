//! Prometheus metrics on their own port: calls by RPC and code, Authorize results and latency,
//! and token counts.

mod common;

use common::{Backend, TestApp, authorize, create, get};
use privint::grpc::pb;

#[track_caller]
fn assert_line(page: &str, line: &str) {
    assert!(
        page.lines().any(|it| it == line),
        "missing {line:?} in\n{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_results_and_tokens() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    authorize(&app, &token, &["contacts.readonly"]).await;
    authorize(&app, &token, &["calendars.write"]).await;
    authorize(&app, "not-a-token", &[]).await;
    let unknown = pb::GetIntegrationRequest {
        id: "01234567-89ab-7def-8123-456789abcdef".to_owned(),
    };
    api.get_integration(unknown).await.expect_err("not found");
    app.anonymous_api()
        .await
        .list_scopes(pb::ListScopesRequest::default())
        .await
        .expect_err("no JWT");

    // Any path can be sent: paths that name no method share one label.
    let (mut send, _closed) = common::raw::h2_connect(app.addr).await;
    for path in ["/no.such.Service/A", "/no.such.Service/B"] {
        let code = common::raw::raw_call(&mut send, path, &[], bytes::Bytes::new())
            .await
            .expect("answered");
        assert_eq!(code, 12, "UNIMPLEMENTED");
    }

    let (status, page) = get(&app, "/metrics").await;
    assert_eq!(status, 200);
    assert_line(
        &page,
        r#"privint_rpc_calls_total{rpc="unknown",code="UNIMPLEMENTED"} 2"#,
    );
    assert!(!page.contains("no.such.Service"), "{page}");
    assert_line(
        &page,
        r#"privint_rpc_calls_total{rpc="/privint.v1.IntegrationService/CreateIntegration",code="OK"} 1"#,
    );
    assert_line(
        &page,
        r#"privint_rpc_calls_total{rpc="/privint.v1.TokenAuthorizer/Authorize",code="OK"} 3"#,
    );
    assert_line(
        &page,
        r#"privint_rpc_calls_total{rpc="/privint.v1.IntegrationService/GetIntegration",code="NOT_FOUND"} 1"#,
    );
    assert_line(
        &page,
        r#"privint_rpc_calls_total{rpc="/privint.v1.IntegrationService/ListScopes",code="UNAUTHENTICATED"} 1"#,
    );
    assert_line(
        &page,
        r#"privint_authorize_results_total{result="allow"} 1"#,
    );
    assert_line(
        &page,
        r#"privint_authorize_results_total{result="missing_scopes"} 1"#,
    );
    assert_line(
        &page,
        r#"privint_authorize_results_total{result="malformed_token"} 1"#,
    );
    // Latency is sampled (one call in 64 per thread), so three calls may leave no sample.
    assert!(
        page.lines()
            .any(|line| line.starts_with("privint_authorize_latency_seconds_count ")),
        "{page}"
    );
    assert_line(&page, "privint_live_tokens 1");
    assert_line(&page, "privint_indexed_tokens 1");
    assert!(
        page.lines()
            .any(|line| line.starts_with("privint_change_feed_lag_seconds ")),
        "{page}"
    );
    assert!(!page.contains(&token["pit-".len()..]));

    let expire = pb::ExpireTokenRequest {
        id: integration.id,
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    };
    api.expire_token(expire).await.expect("expire");
    let (_, page) = get(&app, "/metrics").await;
    assert_line(&page, "privint_live_tokens 0");
    assert_line(&page, "privint_indexed_tokens 1");
    assert_eq!(get(&app, "/other").await.0, 404);
}

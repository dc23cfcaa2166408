//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the real binary exports its RPC spans over
//! OTLP to a collector (here a minimal one made with the OTLP protos), joined to the caller's
//! trace through W3C `traceparent` metadata, and flushed on shutdown.

mod common;

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use privint::grpc::pb;

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|it| it.scope_spans)
            .flat_map(|it| it.spans);
        self.0.lock().expect("collector lock").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_reach_the_collector_joined_to_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let endpoint = format!("http://{collector_addr}");
    let server = common::Binary::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let channel = server.channel().await;
    let jwt = common::jwt(common::user("agency_admin", common::AGENCY, &[], None));
    let traceparent: tonic::metadata::MetadataValue<_> = format!("00-{TRACE_ID}-{PARENT_ID}-01")
        .parse()
        .expect("metadata");
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {jwt}").parse().expect("metadata");
    let mut api = pb::integration_service_client::IntegrationServiceClient::with_interceptor(
        channel.clone(),
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            request
                .metadata_mut()
                .insert("traceparent", traceparent.clone());
            Ok(request)
        },
    );
    let created = api
        .create_integration(common::location_integration(
            "Traced",
            &["contacts.readonly"],
        ))
        .await
        .expect("create")
        .into_inner();
    let mut authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
    let mut request = tonic::Request::new(pb::AuthorizeRequest {
        token: created.token.clone(),
        location_id: common::LOCATION.to_owned(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
            .parse()
            .expect("metadata"),
    );
    authorizer.authorize(request).await.expect("authorize");
    server.stop();

    let spans = collector.0.lock().expect("collector lock").clone();
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|span| hex(&span.trace_id) == TRACE_ID)
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|span| span.name.as_str()).collect();
    for expected in [
        "/privint.v1.IntegrationService/CreateIntegration",
        "/privint.v1.TokenAuthorizer/Authorize",
        "create_integration",
        "authorize",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    // The server spans are children of the caller's span; the handler spans nest inside them.
    for server_span in in_trace.iter().filter(|span| span.name.starts_with('/')) {
        assert_eq!(hex(&server_span.parent_span_id), PARENT_ID);
    }
    let authorize_server = in_trace
        .iter()
        .find(|span| span.name == "/privint.v1.TokenAuthorizer/Authorize")
        .expect("server span");
    let authorize_handler = in_trace
        .iter()
        .find(|span| span.name == "authorize")
        .expect("handler span");
    assert_eq!(authorize_handler.parent_span_id, authorize_server.span_id);
    // No token in any exported span.
    assert!(!format!("{spans:?}").contains(&created.token["pit-".len()..]));
}

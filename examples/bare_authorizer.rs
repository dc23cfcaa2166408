//! The wire baseline: a bare tonic server answering every Authorize with one fixed ALLOW, on the
//! same stack as privint (tonic, TCP_NODELAY) but with no index, no decision, no layers.
//! `benches/wire.sh` drives it and privint side by side with the same client (h2load).
//!
//! Usage: `bare_authorizer serve ADDR` serves; `bare_authorizer request TOKEN LOCATION FILE`
//! writes a gRPC-framed AuthorizeRequest body for h2load to send.

use privint::grpc::pb;
use prost::Message;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Answers every call with the same response.
struct Bare(pb::AuthorizeResponse);

#[tonic::async_trait]
impl pb::token_authorizer_server::TokenAuthorizer for Bare {
    async fn authorize(
        &self,
        _request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", addr] => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let fixed = pb::AuthorizeResponse {
                decision: pb::Decision::Allow.into(),
                principal: Some(pb::Principal {
                    integration_id: "019ab5a1-0000-7000-8000-000000000001".to_owned(),
                    agency_id: "agency1".to_owned(),
                    location_id: "loc1".to_owned(),
                    scopes: vec!["contacts.readonly".to_owned()],
                    token_id: "019ab5a1-0000-7000-9000-000000000001".to_owned(),
                }),
                index_staleness: Some(prost_types::Duration::default()),
                ..Default::default()
            };
            Server::builder()
                .add_service(pb::token_authorizer_server::TokenAuthorizerServer::new(
                    Bare(fixed),
                ))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await?;
        }
        ["request", token, location, file] => {
            let request = pb::AuthorizeRequest {
                token: (*token).to_owned(),
                required_scopes: vec!["contacts.readonly".to_owned()],
                location_id: (*location).to_owned(),
                ..Default::default()
            };
            // A gRPC message: no compression, the length, then the protobuf bytes.
            let body = request.encode_to_vec();
            let mut framed = vec![0];
            framed.extend_from_slice(&u32::try_from(body.len())?.to_be_bytes());
            framed.extend_from_slice(&body);
            std::fs::write(file, framed)?;
        }
        _ => anyhow::bail!("usage: bare_authorizer serve ADDR | request TOKEN LOCATION FILE"),
    }
    Ok(())
}

//! TLS on the port, and mutual TLS for Authorize callers, with certificates made here.

mod common;

use std::sync::Arc;

use common::{Backend, LOCATION, TestApp, TestDb, create, deny_reason};
use privint::grpc::pb;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A certificate authority that signs server and client certificates.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Returns a certificate and key (PEM) for `names`.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|it| (*it).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

async fn spawn(
    require_client_cert: bool,
    server_ca: &Authority,
    client_ca: &Authority,
    client: Option<(String, String)>,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = server_ca.sign(&["localhost"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.tls.cert_file = Some(write("server.pem", &cert));
    settings.tls.key_file = Some(write("server.key", &key));
    if require_client_cert {
        settings.tls.client_ca_file = Some(write("client-ca.pem", &client_ca.pem));
    }
    let mut client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server_ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        client_tls = client_tls.identity(Identity::from_pem(cert, key));
    }
    let app =
        TestApp::spawn_with_tls(db, settings, Arc::new(Default::default()), Some(client_tls)).await;
    (app, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificates() {
    let ca = Authority::new();
    let (app, _dir) = spawn(false, &ca, &ca, None).await;
    let (_, token) = create(&mut app.api().await).await;
    assert_eq!(
        deny_reason(&common::authorize(&app, &token, &["contacts.readonly"]).await),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_requires_a_client_certificate_from_the_configured_ca() {
    let server_ca = Authority::new();
    let client_ca = Authority::new();
    // Management callers (browsers, tools) need no client certificate.
    let (app, _dir) = spawn(true, &server_ca, &client_ca, None).await;
    let (_, token) = create(&mut app.api().await).await;
    let request = pb::AuthorizeRequest {
        token: token.clone(),
        location_id: LOCATION.to_owned(),
        ..Default::default()
    };
    let status = app
        .authorizer()
        .await
        .authorize(request.clone())
        .await
        .expect_err("no client certificate");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // A service with a certificate from the client CA may call Authorize.
    let service = client_ca.sign(&["billing-service"]);
    let (app, _dir) = spawn(true, &server_ca, &client_ca, Some(service)).await;
    let (_, token) = create(&mut app.api().await).await;
    let request = pb::AuthorizeRequest { token, ..request };
    let response = app
        .authorizer()
        .await
        .authorize(request.clone())
        .await
        .expect("client certificate")
        .into_inner();
    assert_eq!(deny_reason(&response), None);

    // A certificate from another CA fails the handshake.
    let rogue = Authority::new().sign(&["rogue-service"]);
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&server_ca.pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(rogue.0, rogue.1));
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", app.addr))
        .expect("uri")
        .tls_config(client_tls)
        .expect("tls");
    let refused = match channel.connect().await {
        Err(_) => true,
        Ok(channel) => pb::token_authorizer_client::TokenAuthorizerClient::new(channel)
            .authorize(request)
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from an unknown CA is refused");
}

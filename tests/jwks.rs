//! Management JWTs signed with JWKS keys: EdDSA (Ed25519), ES256 (P-256) and RS256.
//! The Ed25519 and P-256 keys are made per run; the RSA key is a test-only fixture
//! (`tests/fixtures/rsa-test-key.*`), since ring cannot generate RSA keys.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::{AGENCY, Backend, TestApp, TestDb, user};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use privint::grpc::pb;
use rcgen::KeyPair;
use serde_json::json;
use tonic::Code;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(algorithm: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(algorithm)
    };
    jsonwebtoken::encode(&header, &user("agency_admin", AGENCY, &[], None), key).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_of_each_kind_verify() {
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p-256");
    let ec_point = ec.public_key_raw();
    assert_eq!(ec_point.len(), 65, "an uncompressed P-256 point");
    let rsa_pem = include_str!("fixtures/rsa-test-key.pem");
    let rsa_jwk: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/rsa-test-key.jwk.json")).expect("fixture");
    let jwks = json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64(ed.public_key_raw()) },
        { "kty": "EC", "crv": "P-256", "kid": "ec-1", "x": b64(&ec_point[1..33]), "y": b64(&ec_point[33..]) },
        rsa_jwk,
    ]});
    let dir = tempfile::tempdir().expect("temporary directory");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("write JWKS");

    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.auth.hs256_secret = None;
    settings.auth.jwks_file = Some(jwks_file);
    let app = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;

    let ed_key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).expect("ed key");
    let ec_key = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("ec key");
    let rsa_key = EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa key");
    for jwt in [
        sign(Algorithm::EdDSA, "ed-1", &ed_key),
        sign(Algorithm::ES256, "ec-1", &ec_key),
        sign(Algorithm::RS256, "rsa-1", &rsa_key),
    ] {
        let mut api = app.api_with(&jwt).await;
        api.list_scopes(pb::ListScopesRequest::default())
            .await
            .expect("a JWKS key verifies");
    }

    let stranger = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    let stranger_key = EncodingKey::from_ed_pem(stranger.serialize_pem().as_bytes()).expect("key");
    let rejected = [
        // A key that is not in the set.
        sign(Algorithm::EdDSA, "ed-1", &stranger_key),
        // A known key under another key's id.
        sign(Algorithm::EdDSA, "ec-1", &ed_key),
        // HS256 is not configured, so no secret (not even a public key's bytes) verifies it.
        sign(
            Algorithm::HS256,
            "rsa-1",
            &EncodingKey::from_secret(rsa_pem.as_bytes()),
        ),
        common::jwt(user("agency_admin", AGENCY, &[], None)),
    ];
    for jwt in rejected {
        let mut api = app.api_with(&jwt).await;
        let status = api
            .list_scopes(pb::ListScopesRequest::default())
            .await
            .expect_err("rejected");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

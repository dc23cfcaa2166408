//! No token and no digest ever reaches the log or trace output, checked on the real
//! binary at the most verbose level through a whole lifecycle.

mod common;

use std::time::Duration;

use base64::Engine;
use privint::grpc::pb;
use ring::digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_digest_in_logs_and_traces() {
    let server = common::Binary::start(&[("RUST_LOG", "trace")]);
    let tokens = lifecycle(&server.addr).await;
    let log = server.stop();

    // The output is real and detailed: spans of the RPCs, and the shutdown.
    for expected in [
        "CreateIntegration",
        "RotateToken",
        "Authorize",
        "received SIGTERM",
        "stopped",
    ] {
        assert!(log.contains(expected), "the log should mention {expected}");
    }
    assert!(tokens.len() >= 4);
    for token in &tokens {
        let sha = digest::digest(&digest::SHA256, token.as_bytes());
        let hex: String = sha
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let forms = [
            token.clone(),
            token["pit-".len()..].to_owned(),
            hex.clone(),
            hex.to_uppercase(),
            base64::engine::general_purpose::STANDARD.encode(sha.as_ref()),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha.as_ref()),
            format!("{:?}", sha.as_ref()),
        ];
        for form in forms {
            assert!(
                !log.contains(&form),
                "a token or digest appeared in the output"
            );
        }
    }
}

/// Runs every lifecycle action plus Authorize calls; returns every token seen.
async fn lifecycle(addr: &str) -> Vec<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let jwt = common::jwt(common::user("agency_admin", common::AGENCY, &[], None));
    let mut api = common::api_on(channel.clone(), &jwt);
    let mut authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
    let mut tokens = Vec::new();
    let created = api
        .create_integration(common::location_integration(
            "Zapier",
            &["contacts.readonly"],
        ))
        .await
        .expect("create")
        .into_inner();
    let id = created.integration.expect("integration").id;
    tokens.push(created.token);
    let rotated = api
        .rotate_token(pb::RotateTokenRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    tokens.push(rotated.token);
    api.cancel_rotation(pb::CancelRotationRequest {
        id: id.clone(),
        etag: String::new(),
    })
    .await
    .expect("cancel");
    let rotated = api
        .rotate_token(pb::RotateTokenRequest {
            id: id.clone(),
            expire_old_now: true,
            ..Default::default()
        })
        .await
        .expect("rotate");
    tokens.push(rotated.into_inner().token);
    let rotated = api
        .rotate_token(pb::RotateTokenRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate");
    tokens.push(rotated.into_inner().token);
    let mut typo = tokens[0].clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    tokens.push(String::from_utf8(typo).expect("ascii"));
    for token in &tokens {
        for (scopes, location) in [
            (vec![], common::LOCATION),
            (vec!["contacts.write".to_owned()], "loc2"),
            (vec!["no.such".to_owned()], ""),
        ] {
            let request = pb::AuthorizeRequest {
                token: format!("Bearer {token}"),
                required_scopes: scopes,
                location_id: location.to_owned(),
                ..Default::default()
            };
            let _ = authorizer.authorize(request).await;
        }
    }
    api.expire_token(pb::ExpireTokenRequest {
        id: id.clone(),
        target: pb::ExpireTarget::Previous.into(),
        etag: String::new(),
    })
    .await
    .expect("expire previous");
    let in_an_hour = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let schedule = pb::ScheduleTokenExpiryRequest {
        id: id.clone(),
        expire_time: Some(in_an_hour),
        etag: String::new(),
    };
    api.schedule_token_expiry(schedule).await.expect("schedule");
    api.expire_token(pb::ExpireTokenRequest {
        id: id.clone(),
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    })
    .await
    .expect("expire");
    // Errors too: a stale etag, a wrong state, a bad field.
    let _ = api
        .delete_integration(pb::DeleteIntegrationRequest {
            id: id.clone(),
            etag: "v1".to_owned(),
        })
        .await;
    let _ = api
        .cancel_rotation(pb::CancelRotationRequest {
            id: id.clone(),
            etag: String::new(),
        })
        .await;
    let _ = api
        .create_integration(common::location_integration(
            &tokens[0],
            &["contacts.readonly"],
        ))
        .await;
    api.delete_integration(pb::DeleteIntegrationRequest {
        id,
        etag: String::new(),
    })
    .await
    .expect("delete");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokens
}

#[test]
fn messages_with_tokens_print_redacted() {
    let secret = "pit-SECRET".to_owned();
    let printed = [
        format!(
            "{:?}",
            pb::AuthorizeRequest {
                token: secret.clone(),
                ..Default::default()
            }
        ),
        format!(
            "{:?}",
            pb::CreateIntegrationResponse {
                token: secret.clone(),
                ..Default::default()
            }
        ),
        format!(
            "{:?}",
            pb::RotateTokenResponse {
                token: secret.clone(),
                ..Default::default()
            }
        ),
    ];
    for printed in printed {
        assert!(
            !printed.contains("SECRET") && printed.contains("[redacted]"),
            "{printed}"
        );
    }
}

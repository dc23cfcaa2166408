//! Management callers: any bearer string is verified or refused, never a panic, and nothing
//! unsigned passes. Inputs that are JSON objects are also signed with the right key as claims,
//! so the claim and caller parsing behind the signature is reached too.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use privint::grpc::auth::Authenticator;
use secrecy::SecretString;

const SECRET: &str = "fuzzing-secret-that-is-at-least-32-bytes";

static AUTHENTICATOR: LazyLock<Authenticator> = LazyLock::new(|| {
    Authenticator::new(
        None,
        Some(&SecretString::from(SECRET)),
        "privint",
        "privint",
    )
    .expect("an HS256 authenticator")
});

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // As sent: nobody but the key's holder signs, so nothing the fuzzer makes passes.
    assert!(AUTHENTICATOR.verify(input).is_err());
    // As claims signed with the right key.
    if let Ok(claims @ serde_json::Value::Object(_)) = serde_json::from_str(input) {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        let header = jsonwebtoken::Header::default();
        if let Ok(jwt) = jsonwebtoken::encode(&header, &claims, &key)
            && let Ok(caller) = AUTHENTICATOR.verify(&jwt)
        {
            assert_eq!(Some(caller.user_id.as_str()), claims["sub"].as_str());
        }
    }
});

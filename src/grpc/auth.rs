//! Caller authentication for management RPCs: verifies the user's JWT and puts a `Caller` in
//! the request's extensions. The policy itself lives in `domain::caller`.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};
use tracing::info;

use crate::domain::account::AccountId;
use crate::domain::caller::{Caller, Role};

/// The claims privint reads from a user's JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iss: String,
    /// One audience or several (RFC 7519 allows both); one must be the configured audience.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub location_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// A JWT's `aud` claim: a string, or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Self::One(audience.to_owned())
    }
}

/// A key that may have signed a JWT.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies management callers' JWTs: signature, `exp`, `nbf`, `iss` and `aud`.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<Vec<VerifyingKey>>,
    issuer: String,
    audience: String,
}

impl Authenticator {
    /// Returns an authenticator trusting the keys of `jwks_file` (EdDSA, ES256, RS256) and/or the
    /// HS256 `secret`.
    ///
    /// # Errors
    /// Returns a message if the file cannot be read or holds a key of another kind, or if no key is given.
    pub fn new(
        jwks_file: Option<&Path>,
        secret: Option<&SecretString>,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(path) = jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read JWKS file {}: {err}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|err| format!("invalid JWKS file {}: {err}", path.display()))?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(params)
                        if params.curve == EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    _ => return Err(
                        "JWKS keys must be RSA (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA)"
                            .to_owned(),
                    ),
                };
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|err| format!("invalid JWKS key: {err}"))?;
                keys.push(VerifyingKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        if let Some(secret) = secret {
            if secret.expose_secret().len() < 32 {
                return Err("the HS256 secret must be at least 32 bytes".to_owned());
            }
            keys.push(VerifyingKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            });
        }
        if keys.is_empty() {
            return Err(
                "no JWT verification key: configure auth.jwks_file or auth.hs256_secret".to_owned(),
            );
        }
        Ok(Self {
            keys: Arc::new(keys),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// Verifies `jwt` and returns its caller.
    ///
    /// # Errors
    /// Returns `UNAUTHENTICATED` whatever is wrong, the same vague answer for every check; which
    /// check failed is logged at info (never the JWT): malformed, algorithm, key id, signature,
    /// expired, not yet valid, issuer, audience, claims.
    pub fn verify(&self, jwt: &str) -> Result<Caller, Status> {
        let failed = |reason: &str| {
            info!(reason, "management caller authentication failed");
            Status::unauthenticated("authentication failed")
        };
        let header = jsonwebtoken::decode_header(jwt).map_err(|err| match err.kind() {
            // A header that is JSON but not a JWT header: an algorithm jsonwebtoken does not
            // know, such as `none`.
            ErrorKind::Json(_) => failed("algorithm"),
            _ => failed("malformed"),
        })?;
        if !self.keys.iter().any(|key| key.algorithm == header.alg) {
            return Err(failed("algorithm"));
        }
        let candidates = self.keys.iter().filter(|key| {
            key.algorithm == header.alg
                && match (&key.kid, &header.kid) {
                    (Some(key_id), Some(header_id)) => key_id == header_id,
                    _ => true,
                }
        });
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let mut last_reason = "key id";
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(jwt, &key.key, &validation) {
                Ok(data) => return caller(data.claims).map_err(|()| failed("invalid claims")),
                Err(err) => {
                    last_reason = match err.kind() {
                        ErrorKind::ExpiredSignature => "expired",
                        ErrorKind::ImmatureSignature => "not yet valid",
                        ErrorKind::InvalidIssuer => "issuer",
                        ErrorKind::InvalidAudience => "audience",
                        ErrorKind::InvalidSignature => "signature",
                        ErrorKind::InvalidAlgorithm => "algorithm",
                        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => "claims",
                        _ => "malformed",
                    };
                }
            }
        }
        Err(failed(last_reason))
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("authentication required: send authorization: Bearer <jwt>")
        })?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authentication failed"))?;
        let jwt = match value.split_once(' ') {
            Some((scheme, jwt)) if scheme.eq_ignore_ascii_case("bearer") => jwt.trim(),
            _ => {
                return Err(Status::unauthenticated(
                    "authentication failed: expected authorization: Bearer <jwt>",
                ));
            }
        };
        let caller = self.verify(jwt)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

fn caller(claims: Claims) -> Result<Caller, ()> {
    if claims.sub.is_empty() {
        return Err(());
    }
    let agency_id = claims
        .agency_id
        .as_deref()
        .map(|id| AccountId::parse("agency_id", id))
        .transpose()
        .map_err(|_| ())?;
    let location_ids = claims
        .location_ids
        .iter()
        .map(|id| AccountId::parse("location_ids", id))
        .collect::<Result<_, _>>()
        .map_err(|_| ())?;
    Ok(Caller {
        user_id: claims.sub,
        agency_id,
        role: Role::parse(claims.role.as_deref()),
        location_ids,
        permissions: claims.permissions,
    })
}

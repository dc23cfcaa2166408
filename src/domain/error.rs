//! The only error type the core returns: meanings a caller can act on, not causes.

use std::borrow::Cow;

/// A field of a request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The request field, as named in the proto (e.g. `scopes`, `integration.name`).
    pub field: Cow<'static, str>,
    /// What is wrong, without echoing secrets.
    pub description: String,
}

impl Violation {
    /// Returns a violation of `field`.
    pub fn new(field: impl Into<Cow<'static, str>>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("invalid argument: {}: {}", .0.field, .0.description)]
    InvalidArgument(Violation),
    #[error("the etag does not match: the integration was changed since it was read")]
    Aborted,
    #[error("{0}")]
    FailedPrecondition(&'static str),
    #[error("{0}")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    ResourceExhausted(&'static str),
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(violation)
    }
}

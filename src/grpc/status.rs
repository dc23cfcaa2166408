//! The single mapping from `domain::Error` to `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

use crate::domain::error::{Error, Violation};

impl From<Violation> for Status {
    fn from(violation: Violation) -> Self {
        Error::InvalidArgument(violation).into()
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        // Exhaustive on purpose: a new variant must decide its status here.
        match err {
            Error::NotFound { entity, id } => Status::not_found(format!("{entity} {id} not found")),
            Error::InvalidArgument(violation) => {
                let message = format!("invalid {}: {}", violation.field, violation.description);
                let details = ErrorDetails::with_bad_request_violation(
                    violation.field,
                    violation.description,
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::Aborted => Status::aborted(
                "the etag does not match: the integration was changed since it was read",
            ),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::ResourceExhausted(message) => Status::resource_exhausted(message),
            Error::Unavailable(source) => {
                warn!(error = ?source, "database unavailable");
                Status::unavailable("the database is unavailable, try again later")
            }
            Error::Internal(source) => {
                error!(error = ?source, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

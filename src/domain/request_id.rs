//! A client's id for one create request, so a retry is not a second integration.

use crate::domain::error::{Error, Violation};

/// The longest request id accepted.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// A client request id: 1..=128 printable ASCII characters (a UUID, a ULID, a job id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(
    // Invariant: 1..=128 characters, each printable ASCII.
    String,
);

impl RequestId {
    /// Parses an optional request id: empty is none.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if it is too long or not printable ASCII.
    pub fn parse_optional(field: &'static str, id: &str) -> Result<Option<Self>, Error> {
        if id.is_empty() {
            return Ok(None);
        }
        if id.len() > MAX_REQUEST_ID_CHARS || !id.bytes().all(|it| it.is_ascii_graphic()) {
            return Err(Violation::new(
                field,
                format!("must be 1..={MAX_REQUEST_ID_CHARS} printable ASCII characters"),
            )
            .into());
        }
        Ok(Some(Self(id.to_owned())))
    }

    /// Returns the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_short_printable_ascii() {
        assert_eq!(RequestId::parse_optional("request_id", "").ok(), Some(None));
        let id = RequestId::parse_optional("request_id", "job-42/retry").expect("valid");
        assert_eq!(id.map(|it| it.0), Some("job-42/retry".to_owned()));
        for bad in ["has space", "é", &"x".repeat(129)] {
            assert!(
                RequestId::parse_optional("request_id", bad).is_err(),
                "{bad}"
            );
        }
    }
}

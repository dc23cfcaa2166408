//! The pure core: tokens, scopes, integrations and their lifecycle, the Authorize decision and
//! the management policy.
//!
//! It does no IO, reads no clock (every function takes `now`) and knows nothing of gRPC or the
//! database; it fails only with [`error::Error`].

pub mod caller;
pub mod decision;
pub mod error;
pub mod event;
pub mod integration;
pub mod scope;
pub mod token;

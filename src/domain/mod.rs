//! The pure core: accounts, tokens, scopes, integrations and their lifecycle, the Authorize
//! decision, the management policy and usage arithmetic.
//!
//! It does no IO, reads no clock and generates no ids (every function takes `now` and new ids
//! as parameters) and knows nothing of gRPC or the database; it fails only with [`error::Error`].

pub mod account;
pub mod allowlist;
pub mod caller;
pub mod decision;
pub mod error;
pub mod event;
pub mod integration;
pub mod request_id;
pub mod scope;
pub mod token;
pub mod usage;

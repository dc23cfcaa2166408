//! Use cases: the management of integrations (`Integrations`) and the Authorize decision
//! (`Authorizer`), over the store, the token index and the clock.
//!
//! Knows nothing of gRPC: it takes domain types and returns `domain::Error`.

pub mod authorizer;
pub mod clock;
pub mod integrations;

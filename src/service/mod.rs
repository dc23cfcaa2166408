//! Use cases over the store, the token index and the clock: the lifecycle of integrations
//! (`lifecycle`), the audit log and its stream (`events`), the read model with usage (`usage`),
//! and the Authorize decision (`authorizer`).
//!
//! Knows nothing of gRPC: it takes domain types and returns `domain::Error`.

pub mod authorizer;
pub mod events;
pub mod lifecycle;
pub mod usage;

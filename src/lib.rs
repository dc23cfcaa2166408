//! privint issues private integration tokens (scoped, rotatable access tokens an account owner
//! creates for one third-party integration) and answers Authorize for every API request.
//!
//! Two planes share one process: management RPCs (rare writes, `service::lifecycle`) and
//! Authorize (every request, answered from the in-memory `index`). See ARCHITECTURE.md.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod index;
pub mod metrics;
pub mod port;
pub mod service;
pub mod store;
pub mod telemetry;

//! SeaORM entities: the database schema as Rust types. Nothing outside `store` sees them.

pub mod create_request;
pub mod event;
pub mod integration;
pub mod scope_usage;
pub mod token;
pub mod token_daily_usage;

//! The app's integration tests, in one binary (`cargo test --test it`; one module's tests with
//! e.g. `cargo test --test it streaming::`). Each test runs the real router, or the real `app`
//! binary, on a fresh database: SQLite, or PostgreSQL when `TEST_DATABASE_URL` names a server.
mod helpers;

mod accounts;
mod api;
mod attachments;
mod connections;
mod context_gauge;
mod continue_replies;
mod cpu_variants;
mod devices;
mod docs;
mod engines;
mod faults;
mod features;
mod folders;
mod foundation;
mod hostile;
mod installable;
mod layers;
mod llama_server_tools;
mod mcp;
mod metrics;
mod model_library;
mod model_pool;
mod page_cache;
mod properties;
mod replicas;
mod reply_stats;
mod security;
mod shares;
mod streaming;
mod telemetry;
mod temporary_chats;
mod tools;
mod versions;
mod vision;

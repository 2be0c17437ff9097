//! The database schema, as sea-orm-migration migrations. The app applies pending ones at start-up;
//! `sea-orm-cli migrate up` (from the repo root) and this crate's own CLI (`cargo run -p migration --
//! up|down|reset|status`) do the same by hand, on SQLite and PostgreSQL alike.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_chats_and_messages;
mod m20261124_000002_chat_features;
mod m20261124_000003_reply_leases;
mod m20261202_000004_session_versions;
mod m20261202_000005_reply_stats;
mod m20261202_000006_shares;
mod m20261202_000007_pins_and_folders;
mod m20261202_000008_devices;
mod m20261203_000009_attachments;
mod m20261203_000010_rate_limits;
mod m20261206_000011_temporary_chats;
mod m20261207_000012_message_versions;
mod m20261207_000013_tool_calls;
mod m20261207_000014_chat_tools;
mod m20261208_000015_accounts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_chats_and_messages::Migration),
            Box::new(m20261124_000002_chat_features::Migration),
            Box::new(m20261124_000003_reply_leases::Migration),
            Box::new(m20261202_000004_session_versions::Migration),
            Box::new(m20261202_000005_reply_stats::Migration),
            Box::new(m20261202_000006_shares::Migration),
            Box::new(m20261202_000007_pins_and_folders::Migration),
            Box::new(m20261202_000008_devices::Migration),
            Box::new(m20261203_000009_attachments::Migration),
            Box::new(m20261203_000010_rate_limits::Migration),
            Box::new(m20261206_000011_temporary_chats::Migration),
            Box::new(m20261207_000012_message_versions::Migration),
            Box::new(m20261207_000013_tool_calls::Migration),
            Box::new(m20261207_000014_chat_tools::Migration),
            Box::new(m20261208_000015_accounts::Migration),
        ]
    }
}

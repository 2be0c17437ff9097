//! Devices: the browsers a session is used from, and one-time codes that link another browser
//! to the session. A browser's cookie names its device; signing a device out marks its row
//! revoked, and from then on its cookie is refused (the row stays so that it is recognised).
//! A link code is kept as its SHA-256 (the code itself is shown once), with when it expires and
//! when it was used.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261202_000004_session_versions::{
    drop_triggers_for, postgres_triggers_for, sqlite_triggers_for,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    SessionId,
    Label,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum DeviceLinks {
    Table,
    CodeHash,
    SessionId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(ColumnDef::new(Devices::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Devices::SessionId).string_len(64).not_null())
                    .col(ColumnDef::new(Devices::Label).string_len(200).not_null())
                    .col(
                        ColumnDef::new(Devices::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Devices::LastUsedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Devices::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_session")
                    .table(Devices::Table)
                    .col(Devices::SessionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeviceLinks::Table)
                    .col(
                        ColumnDef::new(DeviceLinks::CodeHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DeviceLinks::SessionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceLinks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceLinks::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DeviceLinks::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_device_links_session")
                    .table(DeviceLinks::Table)
                    .col(DeviceLinks::SessionId)
                    .to_owned(),
            )
            .await?;
        // The devices page is a page like the others: what it lists raises the version.
        let db = manager.get_connection();
        for table in ["devices", "device_links"] {
            let statements = match manager.get_database_backend() {
                DatabaseBackend::Postgres => postgres_triggers_for(table, "session_id"),
                _ => sqlite_triggers_for(table, "session_id"),
            };
            for statement in statements {
                db.execute_unprepared(&statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["devices", "device_links"] {
            for statement in drop_triggers_for(manager.get_database_backend(), table) {
                db.execute_unprepared(&statement).await?;
            }
        }
        manager
            .drop_table(Table::drop().table(DeviceLinks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Devices::Table).to_owned())
            .await
    }
}

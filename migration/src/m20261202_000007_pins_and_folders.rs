//! Pins and folders: a chat may be pinned (kept at the top of the sidebar, in the order pinned)
//! and may sit in one of its session's folders. Deleting a folder leaves its chats unfiled (the
//! store clears their `folder_id` in the same transaction: no foreign key, since SQLite cannot
//! drop a column that has one, and this migration goes down).
//! Folders raise the session's version like every other table (the sidebar shows them).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261202_000004_session_versions::{
    drop_triggers_for, postgres_triggers_for, sqlite_triggers_for,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Folders {
    Table,
    Id,
    SessionId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    PinnedAt,
    FolderId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Folders::Table)
                    .col(ColumnDef::new(Folders::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Folders::SessionId).string_len(64).not_null())
                    .col(ColumnDef::new(Folders::Name).string_len(200).not_null())
                    .col(
                        ColumnDef::new(Folders::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_folders_session")
                    .table(Folders::Table)
                    .col(Folders::SessionId)
                    .to_owned(),
            )
            .await?;
        let columns = [
            ColumnDef::new(Chats::PinnedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Chats::FolderId).uuid().null().to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Chats::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_chats_folder")
                    .table(Chats::Table)
                    .col(Chats::FolderId)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres_triggers_for("folders", "session_id"),
            _ => sqlite_triggers_for("folders", "session_id"),
        };
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in drop_triggers_for(manager.get_database_backend(), "folders") {
            db.execute_unprepared(&statement).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_chats_folder")
                    .table(Chats::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Chats::FolderId, Chats::PinnedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Chats::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Folders::Table).to_owned())
            .await
    }
}

//! Shared links: a read-only snapshot of a chat as it was when shared, at an unguessable token
//! anyone may open. The snapshot is the chat's title and messages as JSON, so later messages,
//! edits and renames never show through a link; revoking a link deletes its row. Deleting the
//! chat deletes its links. Writes raise the session's version like every other table's (the chat
//! page lists the chat's links).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261202_000004_session_versions::{
    drop_triggers_for, postgres_triggers_for, sqlite_triggers_for,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Shares {
    Table,
    Token,
    SessionId,
    ChatId,
    Title,
    Snapshot,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Shares::Table)
                    .col(
                        ColumnDef::new(Shares::Token)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Shares::SessionId).string_len(64).not_null())
                    .col(ColumnDef::new(Shares::ChatId).uuid().not_null())
                    .col(ColumnDef::new(Shares::Title).text().not_null())
                    .col(ColumnDef::new(Shares::Snapshot).text().not_null())
                    .col(
                        ColumnDef::new(Shares::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_shares_chat")
                            .from(Shares::Table, Shares::ChatId)
                            .to(Chats::Table, Chats::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A chat's links, listed on its page.
        manager
            .create_index(
                Index::create()
                    .name("idx_shares_chat")
                    .table(Shares::Table)
                    .col(Shares::ChatId)
                    .col(Shares::CreatedAt)
                    .to_owned(),
            )
            .await?;
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres_triggers_for("shares", "session_id"),
            _ => sqlite_triggers_for("shares", "session_id"),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in drop_triggers_for(manager.get_database_backend(), "shares") {
            db.execute_unprepared(&statement).await?;
        }
        manager
            .drop_table(Table::drop().table(Shares::Table).to_owned())
            .await
    }
}

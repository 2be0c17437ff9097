//! Attachments: files sent with a message. The original bytes live in `attachments` (one row
//! per file, deleted with its chat); the message row carries what pages and prompts need of
//! them, so that reading a chat costs no second query: `attachments`, the files' names, types,
//! sizes and ids as JSON, and `attachment_text`, their text as the model reads it (labelled
//! with each file's name). An edited message keeps the files of the one it replaces (the same
//! rows). Writes raise the session's version like every other table's.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::m20261202_000004_session_versions::{
    drop_triggers_for, postgres_triggers_for, sqlite_triggers_for,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    SessionId,
    ChatId,
    MessageId,
    Name,
    MediaType,
    SizeBytes,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Attachments,
    AttachmentText,
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
                    .table(Attachments::Table)
                    .col(
                        ColumnDef::new(Attachments::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Attachments::SessionId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attachments::ChatId).uuid().not_null())
                    .col(ColumnDef::new(Attachments::MessageId).uuid().not_null())
                    .col(ColumnDef::new(Attachments::Name).text().not_null())
                    .col(
                        ColumnDef::new(Attachments::MediaType)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Attachments::SizeBytes)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attachments::Data).blob().not_null())
                    .col(
                        ColumnDef::new(Attachments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_attachments_chat")
                            .from(Attachments::Table, Attachments::ChatId)
                            .to(Chats::Table, Chats::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Deleting a chat finds its files by it.
        manager
            .create_index(
                Index::create()
                    .name("idx_attachments_chat")
                    .table(Attachments::Table)
                    .col(Attachments::ChatId)
                    .to_owned(),
            )
            .await?;
        for mut column in [
            ColumnDef::new(Messages::Attachments)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Messages::AttachmentText)
                .text()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres_triggers_for("attachments", "session_id"),
            _ => sqlite_triggers_for("attachments", "session_id"),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in drop_triggers_for(manager.get_database_backend(), "attachments") {
            db.execute_unprepared(&statement).await?;
        }
        manager
            .drop_table(Table::drop().table(Attachments::Table).to_owned())
            .await?;
        for column in [Messages::Attachments, Messages::AttachmentText] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

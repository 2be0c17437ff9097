//! Versions as a tree: each message names the one it follows (`parent_id`: a reply its user
//! message, a user message the reply before it; `NULL` for a chat's first). Versions of a
//! message are the messages with the same parent; `superseded` now means "not on the chat's
//! current path". Until now history was a line: an edit marked the old message and its replies
//! superseded, and a regeneration added a reply after the earlier ones. The backfill reads that
//! line as the tree it was: a reply follows the latest user message before it; a user message
//! follows the latest reply (or system message) before it that was not superseded; and of
//! several replies to one message only the last stays on the path, as prompts already read it.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    ChatId,
    ParentId,
}

const INDEX: &str = "idx_messages_chat_parent";

/// Written once for both backends: correlated sub-queries, booleans as `TRUE`/`FALSE`.
const BACKFILL: [&str; 3] = [
    "UPDATE messages SET parent_id = (
        SELECT p.id FROM messages p
        WHERE p.chat_id = messages.chat_id AND p.seq < messages.seq AND p.role = 'user'
        ORDER BY p.seq DESC LIMIT 1)
     WHERE role = 'assistant'",
    "UPDATE messages SET parent_id = (
        SELECT p.id FROM messages p
        WHERE p.chat_id = messages.chat_id AND p.seq < messages.seq AND p.role <> 'user'
          AND p.superseded = FALSE
        ORDER BY p.seq DESC LIMIT 1)
     WHERE role <> 'assistant'",
    "UPDATE messages SET superseded = TRUE
     WHERE role = 'assistant' AND superseded = FALSE AND parent_id IS NOT NULL
       AND EXISTS (
        SELECT 1 FROM messages s
        WHERE s.chat_id = messages.chat_id AND s.parent_id = messages.parent_id
          AND s.seq > messages.seq AND s.superseded = FALSE)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::ParentId).uuid().null())
                    .to_owned(),
            )
            .await?;
        for statement in BACKFILL {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Messages::Table)
                    .col(Messages::ChatId)
                    .col(Messages::ParentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Messages::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .drop_column(Messages::ParentId)
                    .to_owned(),
            )
            .await
    }
}

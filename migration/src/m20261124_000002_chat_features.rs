//! Per-chat settings (system prompt, temperature, max tokens, model), a reply's reasoning kept
//! apart from its answer, edited messages kept as earlier versions, and an index for search.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Chats {
    Table,
    SystemPrompt,
    Temperature,
    MaxTokens,
    Model,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    SessionId,
    CreatedAt,
    Reasoning,
    Superseded,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        // NULL settings mean "the configured default", so changing the defaults reaches every
        // chat that never chose its own.
        let chat_columns = [
            ColumnDef::new(Chats::SystemPrompt).text().null().to_owned(),
            ColumnDef::new(Chats::Temperature).float().null().to_owned(),
            ColumnDef::new(Chats::MaxTokens).integer().null().to_owned(),
            ColumnDef::new(Chats::Model)
                .string_len(200)
                .null()
                .to_owned(),
        ];
        for mut column in chat_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Chats::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let message_columns = [
            // What a thinking model wrote before its answer; NULL when it wrote none.
            ColumnDef::new(Messages::Reasoning).text().null().to_owned(),
            // An edited user message and the replies to it: kept, shown as an earlier version,
            // left out of prompts.
            ColumnDef::new(Messages::Superseded)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ];
        for mut column in message_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // Search reads one session's messages, newest first, until it has enough matches.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_session_created")
                    .table(Messages::Table)
                    .col(Messages::SessionId)
                    .col(Messages::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_messages_session_created")
                    .table(Messages::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Messages::Reasoning, Messages::Superseded] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            Chats::SystemPrompt,
            Chats::Temperature,
            Chats::MaxTokens,
            Chats::Model,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Chats::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

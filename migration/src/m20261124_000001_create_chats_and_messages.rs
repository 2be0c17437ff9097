//! `sessions`, `chats` and `messages` (DESIGN.md "Data model").
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    DisplayName,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    Id,
    SessionId,
    Title,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ChatId,
    SessionId,
    Seq,
    Role,
    Content,
    Status,
    Error,
    FinishReason,
    PromptTokens,
    CompletionTokens,
    CreatedAt,
    UpdatedAt,
}

const ROLES: [&str; 3] = ["system", "user", "assistant"];
const STATUSES: [&str; 5] = ["complete", "streaming", "stopped", "interrupted", "error"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(
                        ColumnDef::new(Sessions::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sessions::DisplayName).string_len(64).null())
                    .col(
                        ColumnDef::new(Sessions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sessions::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Chats::Table)
                    .col(ColumnDef::new(Chats::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Chats::SessionId).string_len(64).not_null())
                    .col(ColumnDef::new(Chats::Title).text().not_null())
                    .col(
                        ColumnDef::new(Chats::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Chats::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The home page and sidebar list a session's chats, most recently active first.
        manager
            .create_index(
                Index::create()
                    .name("idx_chats_session_updated")
                    .table(Chats::Table)
                    .col(Chats::SessionId)
                    .col(Chats::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(ColumnDef::new(Messages::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Messages::ChatId).uuid().not_null())
                    .col(
                        ColumnDef::new(Messages::SessionId)
                            .string_len(64)
                            .not_null(),
                    )
                    // Per-chat sequence number: history order never depends on insertion luck.
                    .col(ColumnDef::new(Messages::Seq).big_integer().not_null())
                    .col(
                        ColumnDef::new(Messages::Role)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Messages::Role).is_in(ROLES)),
                    )
                    .col(ColumnDef::new(Messages::Content).text().not_null())
                    .col(
                        ColumnDef::new(Messages::Status)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Messages::Status).is_in(STATUSES)),
                    )
                    .col(ColumnDef::new(Messages::Error).text().null())
                    .col(ColumnDef::new(Messages::FinishReason).string_len(32).null())
                    .col(ColumnDef::new(Messages::PromptTokens).integer().null())
                    .col(ColumnDef::new(Messages::CompletionTokens).integer().null())
                    .col(
                        ColumnDef::new(Messages::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Messages::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_chat")
                            .from(Messages::Table, Messages::ChatId)
                            .to(Chats::Table, Chats::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // History is read in order by chat; unique so two writers can never share a position.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_chat_seq")
                    .table(Messages::Table)
                    .col(Messages::ChatId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // "Is a reply streaming in this chat?" on every send, and start-up recovery's "which
        // replies were left streaming?": both find the few `streaming` rows at once.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_status_chat")
                    .table(Messages::Table)
                    .col(Messages::Status)
                    .col(Messages::ChatId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Chats::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await?;
        Ok(())
    }
}

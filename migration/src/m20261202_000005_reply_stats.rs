//! Reply stats: which model wrote a reply, how long its first token took, and how long the model
//! took from its first token to its last (with `completion_tokens`, there from the start: its
//! tokens a second). Durations in whole milliseconds, so every column stays exact.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Model,
    TimeToFirstTokenMs,
    GenerationMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Messages::Model)
                .string_len(200)
                .null()
                .to_owned(),
            ColumnDef::new(Messages::TimeToFirstTokenMs)
                .integer()
                .null()
                .to_owned(),
            ColumnDef::new(Messages::GenerationMs)
                .integer()
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Messages::Model,
            Messages::TimeToFirstTokenMs,
            Messages::GenerationMs,
        ] {
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

//! Accounts (`AUTH_MODE=oidc` or `header`): a user is a person the identity provider (or the
//! trusted proxy) names, and owns one session, so that every browser they sign in from shows
//! the same chats. A device signed in for a user carries the user's id. Each user's replies
//! and tokens are counted per UTC day (`usage_days`, keyed by the user's session) for the
//! quotas and the admins' page; counting in the database holds across replicas.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Subject,
    Email,
    Name,
    SessionId,
    InAdminGroup,
    CreatedAt,
    LastSignInAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum UsageDays {
    Table,
    SessionId,
    Day,
    Replies,
    Tokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    // `oidc:{issuer} {sub}` or `header:{value}`: who the person is, for good.
                    .col(
                        ColumnDef::new(Users::Subject)
                            .string_len(1024)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::Email).string_len(320).null())
                    .col(ColumnDef::new(Users::Name).string_len(200).null())
                    .col(
                        ColumnDef::new(Users::SessionId)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Users::InAdminGroup)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::LastSignInAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::DisabledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .add_column(ColumnDef::new(Devices::UserId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_user")
                    .table(Devices::Table)
                    .col(Devices::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageDays::Table)
                    .col(
                        ColumnDef::new(UsageDays::SessionId)
                            .string_len(64)
                            .not_null(),
                    )
                    // `YYYY-MM-DD`, UTC: the month is a prefix of it.
                    .col(ColumnDef::new(UsageDays::Day).string_len(10).not_null())
                    .col(
                        ColumnDef::new(UsageDays::Replies)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(UsageDays::Tokens)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .primary_key(
                        Index::create()
                            .col(UsageDays::SessionId)
                            .col(UsageDays::Day),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageDays::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_devices_user")
                    .table(Devices::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Devices::Table)
                    .drop_column(Devices::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

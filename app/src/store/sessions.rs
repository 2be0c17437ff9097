//! The visitor's session row: the name shown on its messages; and the session's version.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use super::{Store, session};
use crate::domain::SessionId;

impl Store {
    /// The session's version: database triggers raise it on every write to the session's chats,
    /// messages or profile (migration `m20261202_000004`), on whichever replica. 0 before the
    /// first write. Read it before what it vouches for, so that a write in between can only make
    /// the version older than the data, never newer.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn session_version(&self, session_id: &SessionId) -> Result<i64, DbErr> {
        let query = Query::select()
            .column(Alias::new("version"))
            .from(Alias::new("session_versions"))
            .and_where(Expr::col(Alias::new("session_id")).eq(session_id.as_str()))
            .to_owned();
        match self.db.query_one(&query).await? {
            Some(row) => row.try_get("", "version"),
            None => Ok(0),
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn display_name(&self, session_id: &SessionId) -> Result<Option<String>, DbErr> {
        Ok(session::Entity::find_by_id(session_id.as_str().to_owned())
            .one(&self.db)
            .await?
            .and_then(|s| s.display_name))
    }

    /// Sets (or with `None` clears) the name shown on this session's messages.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn set_display_name(
        &self,
        session_id: &SessionId,
        name: Option<&str>,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let updated = session::Entity::update_many()
            .col_expr(
                session::Column::DisplayName,
                Expr::value(name.map(str::to_owned)),
            )
            .col_expr(session::Column::UpdatedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session_id.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            session::ActiveModel {
                id: Set(session_id.as_str().to_owned()),
                display_name: Set(name.map(str::to_owned)),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await
    }
}

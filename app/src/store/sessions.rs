//! The visitor's session row: the name shown on its messages.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, Set, TransactionTrait,
    sea_query::Expr,
};

use super::{Store, session};
use crate::session::SessionId;

impl Store {
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

//! Shared links: their snapshots, a chat's links, and revoking one.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::{Store, share};
use crate::domain::SessionId;

impl Store {
    /// Keeps a snapshot of the session's chat under `token`. The caller has found the chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn create_share(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        token: String,
        title: &str,
        snapshot: String,
    ) -> Result<share::Model, DbErr> {
        share::ActiveModel {
            token: Set(token),
            session_id: Set(session_id.as_str().to_owned()),
            chat_id: Set(chat_id),
            title: Set(title.to_owned()),
            snapshot: Set(snapshot),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
    }

    /// The chat's links, newest first, without their snapshots.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn list_shares(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<Vec<share::Model>, DbErr> {
        share::Entity::find()
            .select_only()
            .columns([
                share::Column::Token,
                share::Column::SessionId,
                share::Column::ChatId,
                share::Column::Title,
                share::Column::CreatedAt,
            ])
            .expr_as(sea_orm::sea_query::Expr::val(""), "snapshot")
            .filter(share::Column::ChatId.eq(chat_id))
            .filter(share::Column::SessionId.eq(session_id.as_str()))
            .order_by_desc(share::Column::CreatedAt)
            .into_model::<share::Model>()
            .all(&self.db)
            .await
    }

    /// A link as anyone holding its token sees it. The one read not scoped to a session: the
    /// unguessable token is the permission.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn find_share(&self, token: &str) -> Result<Option<share::Model>, DbErr> {
        share::Entity::find_by_id(token.to_owned())
            .one(&self.db)
            .await
    }

    /// Whether the link still exists: all a page served from the cache needs to know (the
    /// snapshot it shows never changes).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn share_exists(&self, token: &str) -> Result<bool, DbErr> {
        let found = share::Entity::find_by_id(token.to_owned())
            .select_only()
            .column(share::Column::Token)
            .into_tuple::<String>()
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    /// Deletes the session's link; `false` when it has no such link.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn revoke_share(&self, session_id: &SessionId, token: &str) -> Result<bool, DbErr> {
        let deleted = share::Entity::delete_many()
            .filter(share::Column::Token.eq(token))
            .filter(share::Column::SessionId.eq(session_id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }
}

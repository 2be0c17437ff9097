//! Pins and folders: how a session keeps its chats in the sidebar.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{Store, chat, folder};
use crate::domain::SessionId;

/// What moving a chat into a folder came to.
pub enum Moved {
    Chat(Box<chat::Model>),
    NoSuchChat,
    NoSuchFolder,
}

/// The chats the sidebar shows.
pub struct SidebarChats {
    /// Pinned, or in a folder (at most `ORGANIZED_LIMIT`), most recently active first.
    pub organized: Vec<chat::Model>,
    /// Neither, most recently active first, `limit` of them.
    pub recent: Vec<chat::Model>,
}

/// At most this many pinned or filed chats are listed in the sidebar.
const ORGANIZED_LIMIT: u64 = 500;

impl Store {
    /// The session's folders, by name.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_folders(&self, session_id: &SessionId) -> Result<Vec<folder::Model>, DbErr> {
        folder::Entity::find()
            .filter(folder::Column::SessionId.eq(session_id.as_str()))
            .order_by_asc(folder::Column::Name)
            .order_by_asc(folder::Column::Id)
            .all(&self.db)
            .await
    }

    /// A new folder; `None` when the session already has `max` of them.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_folder(
        &self,
        session_id: &SessionId,
        name: &str,
        max: u64,
    ) -> Result<Option<folder::Model>, DbErr> {
        let count = folder::Entity::find()
            .filter(folder::Column::SessionId.eq(session_id.as_str()))
            .count(&self.db)
            .await?;
        if count >= max {
            return Ok(None);
        }
        folder::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.as_str().to_owned()),
            name: Set(name.to_owned()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map(Some)
    }

    /// Renames the session's folder; `None` when it has no such folder.
    #[tracing::instrument(level = "debug", skip_all, fields(%folder_id))]
    pub async fn rename_folder(
        &self,
        session_id: &SessionId,
        folder_id: Uuid,
        name: &str,
    ) -> Result<Option<folder::Model>, DbErr> {
        Ok(folder::Entity::update_many()
            .col_expr(folder::Column::Name, Expr::value(name.to_owned()))
            .filter(folder::Column::Id.eq(folder_id))
            .filter(folder::Column::SessionId.eq(session_id.as_str()))
            .exec_with_returning(&self.db)
            .await?
            .pop())
    }

    /// Deletes the session's folder; its chats stay, unfiled. `false`: no such folder.
    #[tracing::instrument(level = "debug", skip_all, fields(%folder_id))]
    pub async fn delete_folder(
        &self,
        session_id: &SessionId,
        folder_id: Uuid,
    ) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        chat::Entity::update_many()
            .col_expr(chat::Column::FolderId, Expr::value(Option::<Uuid>::None))
            .filter(chat::Column::FolderId.eq(folder_id))
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .exec(&txn)
            .await?;
        let deleted = folder::Entity::delete_many()
            .filter(folder::Column::Id.eq(folder_id))
            .filter(folder::Column::SessionId.eq(session_id.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Pins the session's chat to the top of the sidebar, or unpins it; its activity time stays.
    /// `None` when it has no such chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn set_pinned(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        pinned: bool,
    ) -> Result<Option<chat::Model>, DbErr> {
        let at = pinned.then(Utc::now);
        let update = chat::Entity::update_many().col_expr(chat::Column::PinnedAt, Expr::value(at));
        self.update_chat(session_id, chat_id, update).await
    }

    /// Moves the session's chat into one of its folders, or out of any (`None`). (A folder
    /// deleted meanwhile leaves the chat shown as unfiled.)
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn move_chat(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        folder_id: Option<Uuid>,
    ) -> Result<Moved, DbErr> {
        let txn = self.db.begin().await?;
        if let Some(folder_id) = folder_id {
            let folder = folder::Entity::find_by_id(folder_id)
                .filter(folder::Column::SessionId.eq(session_id.as_str()))
                .one(&txn)
                .await?;
            if folder.is_none() {
                return Ok(Moved::NoSuchFolder);
            }
        }
        let moved = chat::Entity::update_many()
            .col_expr(chat::Column::FolderId, Expr::value(folder_id))
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .exec_with_returning(&txn)
            .await?
            .pop();
        txn.commit().await?;
        Ok(match moved {
            Some(chat) => Moved::Chat(Box::new(chat)),
            None => Moved::NoSuchChat,
        })
    }

    /// The chats of the sidebar: the pinned and filed ones, and the `limit` newest of the rest.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sidebar_chats(
        &self,
        session_id: &SessionId,
        limit: u64,
    ) -> Result<SidebarChats, DbErr> {
        let of_session = || {
            chat::Entity::find()
                .filter(chat::Column::SessionId.eq(session_id.as_str()))
                .filter(chat::Column::Temporary.eq(false))
        };
        let newest_first = |query: sea_orm::Select<chat::Entity>| {
            query
                .order_by_desc(chat::Column::UpdatedAt)
                .order_by_desc(chat::Column::Id)
        };
        let organized = newest_first(
            of_session().filter(
                sea_orm::Condition::any()
                    .add(chat::Column::PinnedAt.is_not_null())
                    .add(chat::Column::FolderId.is_not_null()),
            ),
        )
        .limit(ORGANIZED_LIMIT)
        .all(&self.db);
        let recent = newest_first(
            of_session()
                .filter(chat::Column::PinnedAt.is_null())
                .filter(chat::Column::FolderId.is_null()),
        )
        .limit(limit)
        .all(&self.db);
        let (organized, recent) = tokio::try_join!(organized, recent)?;
        Ok(SidebarChats { organized, recent })
    }
}

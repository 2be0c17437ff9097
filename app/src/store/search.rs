//! Finding a session's messages and chats by their text.

use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};

use super::{Role, Store, chat, message};
use crate::domain::SessionId;

/// A message that matched a search, with its chat's title.
#[derive(Clone, Debug)]
pub struct SearchHit {
    pub message: message::Model,
    pub chat_title: String,
}

impl Store {
    /// Messages of this session whose text contains `query`, newest first, at most `limit`, each
    /// with its chat's title. Case-insensitive (for letters beyond ASCII only on PostgreSQL).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn search_messages(
        &self,
        session_id: &SessionId,
        query: &str,
        limit: u64,
    ) -> Result<Vec<SearchHit>, DbErr> {
        let found = message::Entity::find()
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Role.ne(Role::System))
            // The chat as it reads: its other versions are not on its page.
            .filter(message::Column::Superseded.eq(false))
            .filter(self.contains((message::Entity, message::Column::Content), query))
            .filter(chat::Column::Temporary.eq(false))
            .order_by_desc(message::Column::CreatedAt)
            .order_by_desc(message::Column::Id)
            .limit(limit)
            .find_also_related(chat::Entity)
            .all(&self.db)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(message, chat)| {
                chat.map(|chat| SearchHit {
                    message,
                    chat_title: chat.title,
                })
            })
            .collect())
    }

    /// This session's chats whose title contains `query`, most recently active first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn search_chats(
        &self,
        session_id: &SessionId,
        query: &str,
        limit: u64,
    ) -> Result<Vec<chat::Model>, DbErr> {
        chat::Entity::find()
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .filter(self.contains((chat::Entity, chat::Column::Title), query))
            .filter(chat::Column::Temporary.eq(false))
            .order_by_desc(chat::Column::UpdatedAt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// `column` contains `text`, ignoring case: ILIKE on PostgreSQL, LIKE (which ignores the
    /// case of ASCII letters) on SQLite. Written out because sea-query's `ilike` with an escape
    /// character produces SQL that PostgreSQL refuses.
    fn contains<C>(&self, column: C, text: &str) -> Expr
    where
        C: sea_orm::sea_query::IntoColumnRef,
    {
        // Each backend's own placeholders: `$n` on PostgreSQL, `?` on SQLite.
        let sql = match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => format!("$1 ILIKE $2 ESCAPE '{LIKE_ESCAPE}'"),
            _ => format!("? LIKE ? ESCAPE '{LIKE_ESCAPE}'"),
        };
        Expr::cust_with_exprs(sql, [Expr::col(column), Expr::val(like_pattern(text))])
    }
}

/// LIKE's escape character: not a backslash, whose meaning differs between databases and
/// string settings.
const LIKE_ESCAPE: char = '!';

/// `%text%` for LIKE, with LIKE's own characters (and the escape character) taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

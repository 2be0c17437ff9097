//! Chats: listing and paging, creating, renaming, settings, titles, deleting.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    DEFAULT_TITLE, FileColumns, Role, Status, Store, TITLE_LOOKAHEAD,
    attachments::insert_attachments, chat, in_line, insert_messages, message, new_message,
    title_for,
};
use crate::{attachments::Attachment, domain::SessionId};

/// A newly created chat.
pub struct NewChat {
    pub chat: chat::Model,
    /// The reply to start, when the chat was created with a first message.
    pub reply: Option<message::Model>,
}

/// Chats, and the id to continue after when there are more.
pub struct PageOfChats {
    pub chats: Vec<chat::Model>,
    pub next: Option<Uuid>,
}

pub use crate::domain::ChatSettings;

/// A chat whose title is still the first words of its first message, with what a better title
/// would be made from.
pub struct TitleCandidate {
    /// The title now (the one to replace).
    pub title: String,
    pub first_message: String,
    pub first_reply: String,
    pub model: Option<String>,
}

impl Store {
    /// This session's chats, most recently active first.
    /// A page of the session's chats, most recently active first, starting after the chat
    /// `after` (the last of the previous page); `None` when `after` is not one of its chats.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn page_of_chats(
        &self,
        session_id: &SessionId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Option<PageOfChats>, DbErr> {
        let after = match after {
            Some(id) => match self.find_chat(session_id, id).await? {
                Some(chat) => Some(chat),
                None => return Ok(None),
            },
            None => None,
        };
        let mut chats = self
            .list_chats(session_id, after.as_ref(), limit + 1)
            .await?;
        let next = if chats.len() as u64 > limit {
            chats.truncate(limit as usize);
            chats.last().map(|c| c.id)
        } else {
            None
        };
        Ok(Some(PageOfChats { chats, next }))
    }

    /// The session's chats, most recently active first, `limit` of them from after `after` (the
    /// last chat of the previous page: keyset paging, so pages do not shift as chats change).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_chats(
        &self,
        session_id: &SessionId,
        after: Option<&chat::Model>,
        limit: u64,
    ) -> Result<Vec<chat::Model>, DbErr> {
        let mut query = chat::Entity::find()
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .filter(chat::Column::Temporary.eq(false));
        if let Some(last) = after {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(chat::Column::UpdatedAt.lt(last.updated_at))
                    .add(
                        sea_orm::Condition::all()
                            .add(chat::Column::UpdatedAt.eq(last.updated_at))
                            .add(chat::Column::Id.lt(last.id)),
                    ),
            );
        }
        query
            .order_by_desc(chat::Column::UpdatedAt)
            .order_by_desc(chat::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn find_chat(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<Option<chat::Model>, DbErr> {
        chat::Entity::find_by_id(chat_id)
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .one(&self.db)
            .await
    }

    /// Creates a chat that opens with `greeting` (an assistant message) when one is given, then
    /// `first_message` from the user when one is given (which also names the chat).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_chat(
        &self,
        session_id: &SessionId,
        greeting: Option<&str>,
        first_message: Option<(&str, &[Attachment])>,
        temporary: bool,
    ) -> Result<NewChat, DbErr> {
        let now = Utc::now();
        let title = first_message.map_or_else(
            || DEFAULT_TITLE.to_owned(),
            |(content, files)| title_for(content, files.first().map(|f| f.name.as_str())),
        );
        let txn = self.db.begin().await?;
        let chat = chat::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.as_str().to_owned()),
            title: Set(title),
            created_at: Set(now),
            updated_at: Set(now),
            temporary: Set(temporary),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let mut rows = Vec::new();
        if let Some(greeting) = greeting.filter(|g| !g.trim().is_empty()) {
            rows.push(new_message(
                &chat,
                1,
                Role::Assistant,
                greeting,
                Status::Complete,
            ));
        }
        if let Some((content, files)) = first_message {
            let seq = rows.len() as i64 + 1;
            let mut user = new_message(&chat, seq, Role::User, content, Status::Complete);
            FileColumns::of(files).set_on(&mut user);
            rows.push(user);
            rows.push(self.claimed_reply(&chat, seq + 1));
        }
        in_line(&mut rows, None);
        let mut messages = insert_messages(&txn, rows).await?;
        if let Some((_, files)) = first_message
            && let Some(user) = messages.iter().find(|m| m.role == Role::User)
        {
            insert_attachments(&txn, &chat, user.id, files).await?;
        }
        if first_message.is_some()
            && let Some(reply) = messages.last()
        {
            self.start_lease(&txn, reply.id).await?;
        }
        txn.commit().await?;
        let reply = match first_message {
            Some(_) => messages.pop(),
            None => None,
        };
        Ok(NewChat { chat, reply })
    }

    /// Renames a chat; `None` when this session has no such chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn rename_chat(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        title: &str,
    ) -> Result<Option<chat::Model>, DbErr> {
        let update = chat::Entity::update_many()
            .col_expr(chat::Column::Title, Expr::value(title.to_owned()));
        self.update_chat(session_id, chat_id, update).await
    }

    /// Saves a chat's settings; `None` when this session has no such chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn update_settings(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        settings: &ChatSettings,
    ) -> Result<Option<chat::Model>, DbErr> {
        let update = chat::Entity::update_many()
            .col_expr(
                chat::Column::SystemPrompt,
                Expr::value(settings.system_prompt.clone()),
            )
            .col_expr(chat::Column::Temperature, Expr::value(settings.temperature))
            .col_expr(chat::Column::MaxTokens, Expr::value(settings.max_tokens))
            .col_expr(chat::Column::Model, Expr::value(settings.model.clone()))
            .col_expr(chat::Column::Tools, Expr::value(settings.tools_column()));
        self.update_chat(session_id, chat_id, update).await
    }

    /// Applies `update` to this session's chat and returns the chat as it is now, in one
    /// statement; `None` when this session has no such chat.
    pub(super) async fn update_chat(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        update: sea_orm::UpdateMany<chat::Entity>,
    ) -> Result<Option<chat::Model>, DbErr> {
        Ok(update
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .exec_with_returning(&self.db)
            .await?
            .pop())
    }

    /// A chat that should get a generated title: its title is still the one made from its first
    /// message, and it has exactly one complete reply to a user message so far.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn title_candidate(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<Option<TitleCandidate>, DbErr> {
        let Some(chat) = self.find_chat(session_id, chat_id).await? else {
            return Ok(None);
        };
        // The first few messages are enough to decide: a greeting, the first message, replies.
        let first = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .order_by_asc(message::Column::Seq)
            .limit(TITLE_LOOKAHEAD)
            .all(&self.db)
            .await?;
        let Some(user_at) = first.iter().position(|m| m.role == Role::User) else {
            return Ok(None);
        };
        let first_message = &first[user_at];
        let files = first_message.attachment_refs();
        let first_file = files.first().map(|f| f.name.as_str());
        if chat.title != title_for(&first_message.content, first_file) {
            return Ok(None);
        }
        let replies: Vec<&message::Model> = first[user_at + 1..]
            .iter()
            .take_while(|m| m.role == Role::Assistant)
            .filter(|m| m.status == Status::Complete && !m.content.trim().is_empty())
            .collect();
        let ([reply], true) = (replies.as_slice(), first.len() <= user_at + 2) else {
            return Ok(None);
        };
        Ok(Some(TitleCandidate {
            title: chat.title.clone(),
            first_message: match first_file {
                Some(name) if first_message.content.trim().is_empty() => {
                    format!("(sends the file “{name}”)")
                }
                _ => first_message.content.clone(),
            },
            first_reply: reply.content.clone(),
            model: chat.model.clone(),
        }))
    }

    /// Sets a generated title, unless the title changed meanwhile (the user renamed the chat).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn replace_automatic_title(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        expected: &str,
        title: &str,
    ) -> Result<bool, DbErr> {
        let updated = chat::Entity::update_many()
            .col_expr(chat::Column::Title, Expr::value(title.to_owned()))
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .filter(chat::Column::Title.eq(expected))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Deletes every temporary chat (with its messages, files and links, by the cascading
    /// foreign keys) unused since `before`; how many. A replica-wide sweep: it takes no
    /// visitor's input, and any replica may run it (a chat deleted twice is deleted once).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn delete_unused_temporary_chats(
        &self,
        before: chrono::DateTime<Utc>,
    ) -> Result<u64, DbErr> {
        let deleted = chat::Entity::delete_many()
            .filter(chat::Column::Temporary.eq(true))
            .filter(chat::Column::UpdatedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Deletes a chat and (by the cascading foreign key) its messages. `false`: no such chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn delete_chat(&self, session_id: &SessionId, chat_id: Uuid) -> Result<bool, DbErr> {
        let deleted = chat::Entity::delete_many()
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }
}

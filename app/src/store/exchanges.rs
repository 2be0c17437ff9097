//! Messages: a user's message and the reply to it (sent, edited, regenerated), reading them
//! back, and saving a reply as it streams and when it ends.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use super::{
    DEFAULT_TITLE, FileColumns, Role, Status, Store, attachments::insert_attachments, chat,
    in_line, insert_messages, message, new_message, session, title_for,
};
use crate::{attachments::Attachment, domain::SessionId};

/// What asking for a new reply in a chat came to.
pub enum NewReply {
    /// Stored: the user's message (when one was sent) and the assistant message to generate,
    /// with the chat as the transaction left it (its settings shape the reply) and the
    /// session's display name (the page shows it on the user's message).
    Started {
        user: Option<Box<message::Model>>,
        reply: Box<message::Model>,
        chat: Box<chat::Model>,
        display_name: Option<String>,
    },
    NoSuchChat,
    /// A reply is still being written in this chat.
    Busy,
    /// Nothing to reply to (no user message yet).
    NothingToAnswer,
    /// Edit: this chat has no such message.
    NoSuchMessage,
    /// Edit: only a user message on the chat's current path can be edited.
    NotEditable,
    /// Continue: only the chat's latest reply, stopped or cut at its length, goes on.
    CannotContinue,
}

/// How a reply ended, for [`Store::finish_reply`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyEnd {
    pub status: Status,
    pub error: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    /// The model that wrote the reply.
    pub model: Option<String>,
    /// From asking the model to its first piece of text.
    pub time_to_first_token_ms: Option<i32>,
    /// From the model's first token to its last.
    pub generation_ms: Option<i32>,
    /// The reply's calls of tools, in order.
    pub tool_steps: Vec<crate::domain::ToolStep>,
}

impl ReplyEnd {
    /// An end without a finish reason or token counts (stopped, interrupted, failed).
    pub fn new(status: Status, error: Option<String>) -> Self {
        Self {
            status,
            error,
            finish_reason: None,
            prompt_tokens: None,
            completion_tokens: None,
            model: None,
            time_to_first_token_ms: None,
            generation_ms: None,
            tool_steps: Vec::new(),
        }
    }
}

impl Store {
    /// The newest `limit` messages of a chat's current path before position `before` (all when
    /// `None`), oldest first. Empty when this session has no such chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn list_messages(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<message::Model>, DbErr> {
        let mut query = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Superseded.eq(false));
        if let Some(before) = before {
            query = query.filter(message::Column::Seq.lt(before));
        }
        let mut newest_first = query
            .order_by_desc(message::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Every message of a chat, every version, in order (an export keeps them all).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn list_all_messages(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<Vec<message::Model>, DbErr> {
        message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .order_by_asc(message::Column::Seq)
            .all(&self.db)
            .await
    }

    /// Whether the chat has messages at position `seq` or later.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn has_messages_from(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        seq: i64,
    ) -> Result<bool, DbErr> {
        Ok(message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Seq.gte(seq))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Stores a user's message and the assistant message that will answer it (status
    /// `streaming`), in one transaction: what the user typed is saved before anything else runs.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn add_exchange(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        content: &str,
        files: &[Attachment],
    ) -> Result<NewReply, DbErr> {
        // Few statements on purpose: SQLite holds its one write lock from the first UPDATE to the
        // commit, so every round trip here delays every other send (see BENCHMARKS.md).
        let txn = self.db.begin().await?;
        let (mut chat, state) = match lock_idle_chat(&txn, session_id, chat_id).await? {
            Ok(locked) => locked,
            Err(refused) => return Ok(refused),
        };
        if chat.title == DEFAULT_TITLE && !state.has_user_message {
            chat.title = title_for(content, files.first().map(|f| f.name.as_str()));
            chat::Entity::update_many()
                .col_expr(chat::Column::Title, Expr::value(chat.title.clone()))
                .filter(chat::Column::Id.eq(chat.id))
                .exec(&txn)
                .await?;
        }
        let parent = state.path_end;
        let columns = FileColumns::of(files);
        self.finish_exchange(txn, chat, state, content, columns, files, parent)
            .await
    }

    /// The end of a send or an edit: the user's message (following `parent`, with `columns`
    /// saying what files it has, and `new_files` stored now) and the reply to write, at `seq`
    /// and `seq + 1`, committed.
    #[allow(clippy::too_many_arguments)]
    async fn finish_exchange(
        &self,
        txn: sea_orm::DatabaseTransaction,
        chat: chat::Model,
        state: ChatState,
        content: &str,
        columns: FileColumns,
        new_files: &[Attachment],
        parent: Option<Uuid>,
    ) -> Result<NewReply, DbErr> {
        let seq = state.last_seq + 1;
        let mut user = new_message(&chat, seq, Role::User, content, Status::Complete);
        columns.set_on(&mut user);
        let mut rows = [user, self.claimed_reply(&chat, seq + 1)];
        in_line(&mut rows, parent);
        let mut inserted = insert_messages(&txn, rows.to_vec()).await?;
        if let Some(user) = inserted.first() {
            insert_attachments(&txn, &chat, user.id, new_files).await?;
        }
        if let Some(reply) = inserted.last() {
            self.start_lease(&txn, reply.id).await?;
        }
        txn.commit().await?;
        let (Some(reply), Some(user)) = (inserted.pop(), inserted.pop()) else {
            return Err(DbErr::RecordNotInserted);
        };
        Ok(NewReply::Started {
            user: Some(Box::new(user)),
            reply: Box::new(reply),
            chat: Box::new(chat),
            display_name: state.display_name,
        })
    }

    /// A new version of a user message on the chat's path, and a reply to it: the new version
    /// follows what the edited one followed, and becomes the path. The edited message and what
    /// came after it stay, as other versions (`store::versions`).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id, %message_id))]
    pub async fn edit_exchange(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        message_id: Uuid,
        content: &str,
    ) -> Result<NewReply, DbErr> {
        let txn = self.db.begin().await?;
        let (chat, state) = match lock_idle_chat(&txn, session_id, chat_id).await? {
            Ok(locked) => locked,
            Err(refused) => return Ok(refused),
        };
        let Some(edited) = message::Entity::find_by_id(message_id)
            .filter(message::Column::ChatId.eq(chat_id))
            .one(&txn)
            .await?
        else {
            return Ok(NewReply::NoSuchMessage);
        };
        if edited.role != Role::User || edited.superseded {
            return Ok(NewReply::NotEditable);
        }
        leave_path_from(&txn, chat_id, edited.seq).await?;
        let columns = FileColumns::kept_from(&edited);
        self.finish_exchange(txn, chat, state, content, columns, &[], edited.parent_id)
            .await
    }

    /// A new version of the reply to the path's latest user message (Regenerate, Retry). The
    /// reply it replaces stays, as another version.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn add_reply(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<NewReply, DbErr> {
        let txn = self.db.begin().await?;
        let (chat, state) = match lock_idle_chat(&txn, session_id, chat_id).await? {
            Ok(locked) => locked,
            Err(refused) => return Ok(refused),
        };
        let question = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::Role.eq(Role::User))
            .filter(message::Column::Superseded.eq(false))
            .order_by_desc(message::Column::Seq)
            .one(&txn)
            .await?;
        let Some(question) = question else {
            return Ok(NewReply::NothingToAnswer);
        };
        leave_path_from(&txn, chat_id, question.seq + 1).await?;
        let mut row = self.claimed_reply(&chat, state.last_seq + 1);
        row.parent_id = Set(Some(question.id));
        let reply = insert_messages(&txn, vec![row])
            .await?
            .pop()
            .ok_or(DbErr::RecordNotInserted)?;
        self.start_lease(&txn, reply.id).await?;
        txn.commit().await?;
        Ok(NewReply::Started {
            user: None,
            reply: Box::new(reply),
            chat: Box::new(chat),
            display_name: state.display_name,
        })
    }

    /// The chat's latest reply `message_id` back to `streaming`, with its text, to go on from
    /// where it ended: one that was stopped, interrupted, or cut at its length (`finish_reason`
    /// `length`). Claimed by this replica, like a new reply.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id, %message_id))]
    pub async fn reopen_reply(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        message_id: Uuid,
    ) -> Result<NewReply, DbErr> {
        let txn = self.db.begin().await?;
        let (chat, state) = match lock_idle_chat(&txn, session_id, chat_id).await? {
            Ok(locked) => locked,
            Err(refused) => return Ok(refused),
        };
        let Some(reply) = message::Entity::find_by_id(message_id)
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .one(&txn)
            .await?
        else {
            return Ok(NewReply::NoSuchMessage);
        };
        if reply.role != Role::Assistant
            || state.path_end != Some(reply.id)
            || !can_continue(&reply)
        {
            return Ok(NewReply::CannotContinue);
        }
        let reopened = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(Status::Streaming))
            .col_expr(message::Column::Error, Expr::value(Option::<String>::None))
            .col_expr(
                message::Column::FinishReason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                message::Column::Owner,
                Expr::value(Some(self.replica.name.clone())),
            )
            .col_expr(
                message::Column::LeaseExpiresAt,
                Expr::value(Some(self.local_lease_until())),
            )
            .col_expr(message::Column::StopRequested, Expr::value(false))
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(reply.id))
            .exec_with_returning(&txn)
            .await?
            .pop()
            .ok_or(DbErr::RecordNotUpdated)?;
        self.start_lease(&txn, reopened.id).await?;
        txn.commit().await?;
        Ok(NewReply::Started {
            user: None,
            reply: Box::new(reopened),
            chat: Box::new(chat),
            display_name: state.display_name,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id, %message_id))]
    pub async fn find_message(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        message_id: Uuid,
    ) -> Result<Option<message::Model>, DbErr> {
        message::Entity::find_by_id(message_id)
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .one(&self.db)
            .await
    }

    /// A message of this session, whatever its chat.
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id))]
    pub async fn find_session_message(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
    ) -> Result<Option<message::Model>, DbErr> {
        message::Entity::find_by_id(message_id)
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .one(&self.db)
            .await
    }

    /// The conversation before position `before`, newest `limit` messages, oldest first: what a
    /// prompt is built from.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn prompt_history(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        before: i64,
        limit: u64,
    ) -> Result<Vec<message::Model>, DbErr> {
        self.list_messages(session_id, chat_id, Some(before), limit)
            .await
    }

    /// Saves a streaming reply's text (and reasoning) so far.
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id))]
    pub async fn checkpoint(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
        content: &str,
        reasoning: &str,
        steps: &[crate::domain::ToolStep],
    ) -> Result<(), DbErr> {
        message::Entity::update_many()
            .col_expr(message::Column::Content, Expr::value(content.to_owned()))
            .col_expr(
                message::Column::Reasoning,
                Expr::value(non_empty(reasoning)),
            )
            .col_expr(
                message::Column::ToolCalls,
                Expr::value(crate::domain::ToolStep::column(steps)),
            )
            .col_expr(message::Column::LeaseExpiresAt, self.lease_until())
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records the person's answer to a call that waits for their approval, in the reply's
    /// row (the replica writing the reply reads it there). `None`: no such reply in this
    /// session; `Some(false)`: the call does not wait (answered already, or the reply ended).
    /// The row is written only if it is as read, so a checkpoint between is not undone.
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id))]
    pub async fn decide_step(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
        step_id: &str,
        approval: crate::domain::Approval,
    ) -> Result<Option<bool>, DbErr> {
        use crate::domain::{Approval, ToolStep};
        for _ in 0..3 {
            let Some(row) = message::Entity::find_by_id(message_id)
                .filter(message::Column::SessionId.eq(session_id.as_str()))
                .filter(message::Column::Role.eq(Role::Assistant))
                .one(&self.db)
                .await?
            else {
                return Ok(None);
            };
            let mut steps = row.tool_steps();
            let waiting = steps
                .iter_mut()
                .find(|s| s.id == step_id && s.approval == Some(Approval::Pending));
            let (Some(step), Status::Streaming) = (waiting, row.status) else {
                return Ok(Some(false));
            };
            step.approval = Some(approval);
            let written = message::Entity::update_many()
                .col_expr(
                    message::Column::ToolCalls,
                    Expr::value(ToolStep::column(&steps)),
                )
                .filter(message::Column::Id.eq(message_id))
                .filter(message::Column::Status.eq(Status::Streaming))
                .filter(message::Column::ToolCalls.eq(row.tool_calls.clone()))
                .exec(&self.db)
                .await?;
            if written.rows_affected == 1 {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    /// Saves how a reply ended, with its whole text and reasoning.
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id, status = ?end.status))]
    pub async fn finish_reply(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
        content: &str,
        reasoning: &str,
        end: &ReplyEnd,
    ) -> Result<(), DbErr> {
        message::Entity::update_many()
            .col_expr(message::Column::Content, Expr::value(content.to_owned()))
            .col_expr(
                message::Column::Reasoning,
                Expr::value(non_empty(reasoning)),
            )
            .col_expr(message::Column::Status, Expr::value(end.status))
            .col_expr(message::Column::Error, Expr::value(end.error.clone()))
            .col_expr(
                message::Column::ToolCalls,
                Expr::value(crate::domain::ToolStep::column(&end.tool_steps)),
            )
            .col_expr(
                message::Column::FinishReason,
                Expr::value(end.finish_reason.clone()),
            )
            .col_expr(
                message::Column::PromptTokens,
                Expr::value(end.prompt_tokens),
            )
            .col_expr(
                message::Column::CompletionTokens,
                Expr::value(end.completion_tokens),
            )
            .col_expr(message::Column::Model, Expr::value(end.model.clone()))
            .col_expr(
                message::Column::TimeToFirstTokenMs,
                Expr::value(end.time_to_first_token_ms),
            )
            .col_expr(
                message::Column::GenerationMs,
                Expr::value(end.generation_ms),
            )
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .exec(&self.db)
            .await?;
        let tokens = i64::from(end.completion_tokens.unwrap_or(0));
        if self.counts_usage && tokens > 0 {
            self.add_tokens(session_id, &crate::domain::utc_day(Utc::now()), tokens)
                .await?;
        }
        Ok(())
    }
}

/// Marks the chat active now and returns it. Updating first takes the chat's row lock (PostgreSQL)
/// or the write lock (SQLite), so writers to one chat are serialised and the next `seq` is safe.
pub(super) async fn lock_chat(
    txn: &impl ConnectionTrait,
    session_id: &SessionId,
    chat_id: Uuid,
) -> Result<Option<chat::Model>, DbErr> {
    Ok(chat::Entity::update_many()
        .col_expr(chat::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(chat::Column::Id.eq(chat_id))
        .filter(chat::Column::SessionId.eq(session_id.as_str()))
        .exec_with_returning(txn)
        .await?
        .pop())
}

/// The chat, locked, and its state; or why nothing may be added to it: there is no such chat, or
/// a reply is being written in it.
async fn lock_idle_chat(
    txn: &impl ConnectionTrait,
    session_id: &SessionId,
    chat_id: Uuid,
) -> Result<Result<(chat::Model, ChatState), NewReply>, DbErr> {
    let Some(chat) = lock_chat(txn, session_id, chat_id).await? else {
        return Ok(Err(NewReply::NoSuchChat));
    };
    let state = chat_state(txn, session_id, chat_id).await?;
    if state.reply_in_progress {
        return Ok(Err(NewReply::Busy));
    }
    Ok(Ok((chat, state)))
}

/// Takes the path's messages from position `seq` on off it (they stay, as other versions).
async fn leave_path_from(txn: &impl ConnectionTrait, chat_id: Uuid, seq: i64) -> Result<(), DbErr> {
    message::Entity::update_many()
        .col_expr(message::Column::Superseded, Expr::value(true))
        .filter(message::Column::ChatId.eq(chat_id))
        .filter(message::Column::Seq.gte(seq))
        .filter(message::Column::Superseded.eq(false))
        .exec(txn)
        .await?;
    Ok(())
}

/// What adding to a chat needs to know about its messages.
pub(super) struct ChatState {
    /// The highest position in the chat, on the path or not: a new message goes after it.
    last_seq: i64,
    /// The last message of the current path: a new message follows it.
    path_end: Option<Uuid>,
    pub(super) reply_in_progress: bool,
    has_user_message: bool,
    /// The session's, read here rather than in a query of its own on every send.
    display_name: Option<String>,
}

/// One statement of five sub-queries, each an index seek (`(chat_id, seq)`, `(status, chat_id)`,
/// the sessions' key), so its cost does not grow with the chat's history (the path's end is the
/// newest message but for what other versions left after it).
pub(super) async fn chat_state(
    txn: &impl ConnectionTrait,
    session_id: &SessionId,
    chat_id: Uuid,
) -> Result<ChatState, DbErr> {
    let messages_where = |condition: sea_orm::sea_query::SimpleExpr| {
        Query::select()
            .expr(Expr::val(1))
            .from(message::Entity)
            .and_where(message::Column::ChatId.eq(chat_id))
            .and_where(condition)
            .to_owned()
    };
    let last_seq = Query::select()
        .expr(message::Column::Seq.max())
        .from(message::Entity)
        .and_where(message::Column::ChatId.eq(chat_id))
        .to_owned();
    let path_end = Query::select()
        .column(message::Column::Id)
        .from(message::Entity)
        .and_where(message::Column::ChatId.eq(chat_id))
        .and_where(message::Column::Superseded.eq(false))
        .order_by(message::Column::Seq, sea_orm::Order::Desc)
        .limit(1)
        .to_owned();
    let display_name = Query::select()
        .column(session::Column::DisplayName)
        .from(session::Entity)
        .and_where(session::Column::Id.eq(session_id.as_str()))
        .to_owned();
    let query = Query::select()
        .expr_as(Expr::SubQuery(None, Box::new(last_seq.into())), "last_seq")
        .expr_as(Expr::SubQuery(None, Box::new(path_end.into())), "path_end")
        .expr_as(
            Expr::exists(messages_where(
                message::Column::Status.eq(Status::Streaming),
            )),
            "reply_in_progress",
        )
        .expr_as(
            Expr::exists(messages_where(message::Column::Role.eq(Role::User))),
            "has_user_message",
        )
        .expr_as(
            Expr::SubQuery(None, Box::new(display_name.into())),
            "display_name",
        )
        .to_owned();
    let row = txn
        .query_one(&query)
        .await?
        .ok_or_else(|| DbErr::Custom("the chat state query returned no row".into()))?;
    Ok(ChatState {
        last_seq: row.try_get::<Option<i64>>("", "last_seq")?.unwrap_or(0),
        path_end: row.try_get("", "path_end")?,
        reply_in_progress: row.try_get("", "reply_in_progress")?,
        has_user_message: row.try_get("", "has_user_message")?,
        display_name: row.try_get("", "display_name")?,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Whether a finished reply may go on from its text: stopped, interrupted, or cut at its length.
pub fn can_continue(reply: &message::Model) -> bool {
    reply.role == Role::Assistant
        && !reply.content.is_empty()
        && match reply.status {
            Status::Stopped | Status::Interrupted => true,
            Status::Complete => reply.finish_reason.as_deref() == Some("length"),
            _ => false,
        }
}

//! Every database query of the app. Each function that touches a visitor's data takes the session
//! id and filters by it, so one session can never read or change another's rows. Knows no HTTP.
pub mod entities;

use std::time::Duration;

use chrono::Utc;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

pub use entities::{
    chat,
    message::{self, Role, Status},
    session,
};

/// Title of a chat until its first message names it (or the user renames it).
pub const DEFAULT_TITLE: &str = "New chat";
/// A chat gets a generated title only while it has at most this many messages.
pub const TITLE_LOOKAHEAD: u64 = 8;
/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 120;

/// Whether a database error means "not reachable right now" (the server is down, restarting, or
/// the connection broke): worth retrying, and a 503 for the user, not a 500.
pub fn is_unreachable(error: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx::Error};
    match error {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                Error::Io(_)
                | Error::Tls(_)
                | Error::Protocol(_)
                | Error::PoolTimedOut
                | Error::PoolClosed
                | Error::WorkerCrashed => true,
                // PostgreSQL's connection exceptions (08…) and "shutting down" (57P01–57P03).
                Error::Database(db) => db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
                _ => false,
            }
        }
        _ => false,
    }
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    replica: std::sync::Arc<Replica>,
}

/// Who this process is among the app's replicas, and how long its claim on a reply it writes
/// lasts without renewal.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    pub lease: Duration,
}

/// A newly created chat and the messages it opened with.
pub struct NewChat {
    pub chat: chat::Model,
    pub messages: Vec<message::Model>,
    /// The reply to start, when the chat was created with a first message.
    pub reply: Option<message::Model>,
}

/// Chats, and the id to continue after when there are more.
pub struct PageOfChats {
    pub chats: Vec<chat::Model>,
    pub next: Option<Uuid>,
}

/// What asking for a new reply in a chat came to.
pub enum NewReply {
    /// Stored: the user's message (when one was sent) and the assistant message to generate.
    Started {
        user: Option<Box<message::Model>>,
        reply: Box<message::Model>,
    },
    NoSuchChat,
    /// A reply is still being written in this chat.
    Busy,
    /// Nothing to reply to (no user message yet).
    NothingToAnswer,
    /// Edit: this chat has no such message.
    NoSuchMessage,
    /// Edit: only the chat's latest user message can be edited.
    NotLatestUserMessage,
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

/// A message that matched a search, with its chat's title.
#[derive(Clone, Debug)]
pub struct SearchHit {
    pub message: message::Model,
    pub chat_title: String,
}

/// A chat to create from an export.
pub struct ImportedChat {
    pub title: String,
    pub settings: ChatSettings,
    pub messages: Vec<ImportedMessage>,
}

pub struct ImportedMessage {
    pub role: Role,
    pub content: String,
    pub reasoning: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    pub superseded: bool,
    pub created_at: chrono::DateTime<Utc>,
}

/// How a reply ended, for [`Store::finish_reply`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyEnd {
    pub status: Status,
    pub error: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
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
        }
    }
}

impl Store {
    /// Connects to SQLite or PostgreSQL. For SQLite: WAL so readers never wait for the writer, a
    /// busy timeout instead of "database is locked", and enforced foreign keys (cascades).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(max_connections)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // A page's rows reach the request in one hand-over instead of a thread
                    // wake-up every 50 rows (the default), which dominated page renders.
                    .row_buffer_size(256)
            });
        let db = Database::connect(options).await?;
        Ok(Self {
            db,
            replica: std::sync::Arc::new(Replica {
                name: "local".into(),
                lease: Duration::from_secs(15),
            }),
        })
    }

    /// The same database, acting as the replica `replica` (the owner of the replies it starts).
    pub fn for_replica(mut self, replica: Replica) -> Self {
        self.replica = std::sync::Arc::new(replica);
        self
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    fn lease_until(&self) -> chrono::DateTime<Utc> {
        let lease = chrono::Duration::from_std(self.replica.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
        Utc::now() + lease
    }

    /// A new reply to write, claimed by this replica.
    fn claimed_reply(&self, chat: &chat::Model, seq: i64) -> message::ActiveModel {
        let mut row = new_message(chat, seq, Role::Assistant, "", Status::Streaming);
        row.owner = Set(Some(self.replica.name.clone()));
        row.lease_expires_at = Set(Some(self.lease_until()));
        row
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
    }

    /// Migrations the database still lacks (another process, e.g. a migration Job, applies
    /// them when the app runs with `SKIP_MIGRATIONS`).
    pub async fn pending_migrations(&self) -> Result<usize, DbErr> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.len())
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    // ---- sessions -------------------------------------------------------------------------

    pub async fn display_name(&self, session_id: &str) -> Result<Option<String>, DbErr> {
        Ok(session::Entity::find_by_id(session_id.to_owned())
            .one(&self.db)
            .await?
            .and_then(|s| s.display_name))
    }

    /// Sets (or with `None` clears) the name shown on this session's messages.
    pub async fn set_display_name(
        &self,
        session_id: &str,
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
            .filter(session::Column::Id.eq(session_id))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            session::ActiveModel {
                id: Set(session_id.to_owned()),
                display_name: Set(name.map(str::to_owned)),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await
    }

    // ---- chats ----------------------------------------------------------------------------

    /// This session's chats, most recently active first.
    /// A page of the session's chats, most recently active first, starting after the chat
    /// `after` (the last of the previous page); `None` when `after` is not one of its chats.
    pub async fn page_of_chats(
        &self,
        session_id: &str,
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
    pub async fn list_chats(
        &self,
        session_id: &str,
        after: Option<&chat::Model>,
        limit: u64,
    ) -> Result<Vec<chat::Model>, DbErr> {
        let mut query = chat::Entity::find().filter(chat::Column::SessionId.eq(session_id));
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

    pub async fn find_chat(
        &self,
        session_id: &str,
        chat_id: Uuid,
    ) -> Result<Option<chat::Model>, DbErr> {
        chat::Entity::find_by_id(chat_id)
            .filter(chat::Column::SessionId.eq(session_id))
            .one(&self.db)
            .await
    }

    /// Creates a chat that opens with `greeting` (an assistant message) when one is given, then
    /// `first_message` from the user when one is given (which also names the chat).
    pub async fn create_chat(
        &self,
        session_id: &str,
        greeting: Option<&str>,
        first_message: Option<&str>,
    ) -> Result<NewChat, DbErr> {
        let now = Utc::now();
        let title = first_message.map_or_else(|| DEFAULT_TITLE.to_owned(), title_from);
        let txn = self.db.begin().await?;
        let chat = chat::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.to_owned()),
            title: Set(title),
            created_at: Set(now),
            updated_at: Set(now),
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
        if let Some(content) = first_message {
            let seq = rows.len() as i64 + 1;
            rows.push(new_message(
                &chat,
                seq,
                Role::User,
                content,
                Status::Complete,
            ));
            rows.push(self.claimed_reply(&chat, seq + 1));
        }
        let mut messages = insert_messages(&txn, rows).await?;
        txn.commit().await?;
        let reply = match first_message {
            Some(_) => messages.pop(),
            None => None,
        };
        Ok(NewChat {
            chat,
            messages,
            reply,
        })
    }

    /// Renames a chat; `None` when this session has no such chat.
    pub async fn rename_chat(
        &self,
        session_id: &str,
        chat_id: Uuid,
        title: &str,
    ) -> Result<Option<chat::Model>, DbErr> {
        let update = chat::Entity::update_many()
            .col_expr(chat::Column::Title, Expr::value(title.to_owned()));
        self.update_chat(session_id, chat_id, update).await
    }

    /// Saves a chat's settings; `None` when this session has no such chat.
    pub async fn update_settings(
        &self,
        session_id: &str,
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
            .col_expr(chat::Column::Model, Expr::value(settings.model.clone()));
        self.update_chat(session_id, chat_id, update).await
    }

    /// Applies `update` to this session's chat and returns the chat as it is now, in one
    /// statement; `None` when this session has no such chat.
    async fn update_chat(
        &self,
        session_id: &str,
        chat_id: Uuid,
        update: sea_orm::UpdateMany<chat::Entity>,
    ) -> Result<Option<chat::Model>, DbErr> {
        Ok(update
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id))
            .exec_with_returning(&self.db)
            .await?
            .pop())
    }

    /// A chat that should get a generated title: its title is still the one made from its first
    /// message, and it has exactly one complete reply to a user message so far.
    pub async fn title_candidate(
        &self,
        session_id: &str,
        chat_id: Uuid,
    ) -> Result<Option<TitleCandidate>, DbErr> {
        let Some(chat) = self.find_chat(session_id, chat_id).await? else {
            return Ok(None);
        };
        // The first few messages are enough to decide: a greeting, the first message, replies.
        let first = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id))
            .order_by_asc(message::Column::Seq)
            .limit(TITLE_LOOKAHEAD)
            .all(&self.db)
            .await?;
        let Some(user_at) = first.iter().position(|m| m.role == Role::User) else {
            return Ok(None);
        };
        let first_message = &first[user_at];
        if chat.title != title_from(&first_message.content) {
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
            first_message: first_message.content.clone(),
            first_reply: reply.content.clone(),
            model: chat.model.clone(),
        }))
    }

    /// Sets a generated title, unless the title changed meanwhile (the user renamed the chat).
    pub async fn replace_automatic_title(
        &self,
        session_id: &str,
        chat_id: Uuid,
        expected: &str,
        title: &str,
    ) -> Result<bool, DbErr> {
        let updated = chat::Entity::update_many()
            .col_expr(chat::Column::Title, Expr::value(title.to_owned()))
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id))
            .filter(chat::Column::Title.eq(expected))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Deletes a chat and (by the cascading foreign key) its messages. `false`: no such chat.
    pub async fn delete_chat(&self, session_id: &str, chat_id: Uuid) -> Result<bool, DbErr> {
        let deleted = chat::Entity::delete_many()
            .filter(chat::Column::Id.eq(chat_id))
            .filter(chat::Column::SessionId.eq(session_id))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    // ---- messages -------------------------------------------------------------------------

    /// The newest `limit` messages of a chat before position `before` (all when `None`), oldest
    /// first. Empty when this session has no such chat.
    pub async fn list_messages(
        &self,
        session_id: &str,
        chat_id: Uuid,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<message::Model>, DbErr> {
        let mut query = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id));
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

    /// Whether the chat has messages at position `seq` or later.
    pub async fn has_messages_from(
        &self,
        session_id: &str,
        chat_id: Uuid,
        seq: i64,
    ) -> Result<bool, DbErr> {
        Ok(message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Seq.gte(seq))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Stores a user's message and the assistant message that will answer it (status
    /// `streaming`), in one transaction: what the user typed is saved before anything else runs.
    pub async fn add_exchange(
        &self,
        session_id: &str,
        chat_id: Uuid,
        content: &str,
    ) -> Result<NewReply, DbErr> {
        // Few statements on purpose: SQLite holds its one write lock from the first UPDATE to the
        // commit, so every round trip here delays every other send (see BENCHMARKS.md).
        let txn = self.db.begin().await?;
        let Some(mut chat) = lock_chat(&txn, session_id, chat_id).await? else {
            return Ok(NewReply::NoSuchChat);
        };
        let state = chat_state(&txn, chat_id).await?;
        if state.reply_in_progress {
            return Ok(NewReply::Busy);
        }
        if chat.title == DEFAULT_TITLE && !state.has_user_message {
            chat.title = title_from(content);
            chat::Entity::update_many()
                .col_expr(chat::Column::Title, Expr::value(chat.title.clone()))
                .filter(chat::Column::Id.eq(chat.id))
                .exec(&txn)
                .await?;
        }
        self.finish_exchange(txn, &chat, state.last_seq + 1, content)
            .await
    }

    /// The end of a send or an edit: the user's message and the reply to write, at `seq` and
    /// `seq + 1`, committed.
    async fn finish_exchange(
        &self,
        txn: sea_orm::DatabaseTransaction,
        chat: &chat::Model,
        seq: i64,
        content: &str,
    ) -> Result<NewReply, DbErr> {
        let mut inserted = insert_messages(
            &txn,
            vec![
                new_message(chat, seq, Role::User, content, Status::Complete),
                self.claimed_reply(chat, seq + 1),
            ],
        )
        .await?;
        txn.commit().await?;
        let (Some(reply), Some(user)) = (inserted.pop(), inserted.pop()) else {
            return Err(DbErr::RecordNotInserted);
        };
        Ok(NewReply::Started {
            user: Some(Box::new(user)),
            reply: Box::new(reply),
        })
    }

    /// Replaces the chat's latest user message with an edited one and starts a reply to it. The
    /// earlier version and its replies stay, marked `superseded`: shown as an earlier version,
    /// left out of prompts.
    pub async fn edit_exchange(
        &self,
        session_id: &str,
        chat_id: Uuid,
        message_id: Uuid,
        content: &str,
    ) -> Result<NewReply, DbErr> {
        let txn = self.db.begin().await?;
        let Some(chat) = lock_chat(&txn, session_id, chat_id).await? else {
            return Ok(NewReply::NoSuchChat);
        };
        let state = chat_state(&txn, chat_id).await?;
        if state.reply_in_progress {
            return Ok(NewReply::Busy);
        }
        let latest_user = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::Role.eq(Role::User))
            .order_by_desc(message::Column::Seq)
            .one(&txn)
            .await?;
        let Some(latest_user) = latest_user else {
            return Ok(NewReply::NoSuchMessage);
        };
        if latest_user.id != message_id {
            let exists = message::Entity::find_by_id(message_id)
                .filter(message::Column::ChatId.eq(chat_id))
                .one(&txn)
                .await?
                .is_some();
            return Ok(match exists {
                true => NewReply::NotLatestUserMessage,
                false => NewReply::NoSuchMessage,
            });
        }
        message::Entity::update_many()
            .col_expr(message::Column::Superseded, Expr::value(true))
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::Seq.gte(latest_user.seq))
            .exec(&txn)
            .await?;
        self.finish_exchange(txn, &chat, state.last_seq + 1, content)
            .await
    }

    /// Messages of this session whose text contains `query`, newest first, at most `limit`, each
    /// with its chat's title. Case-insensitive (for letters beyond ASCII only on PostgreSQL).
    pub async fn search_messages(
        &self,
        session_id: &str,
        query: &str,
        limit: u64,
    ) -> Result<Vec<SearchHit>, DbErr> {
        let found = message::Entity::find()
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Role.ne(Role::System))
            .filter(self.contains((message::Entity, message::Column::Content), query))
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
    pub async fn search_chats(
        &self,
        session_id: &str,
        query: &str,
        limit: u64,
    ) -> Result<Vec<chat::Model>, DbErr> {
        chat::Entity::find()
            .filter(chat::Column::SessionId.eq(session_id))
            .filter(self.contains((chat::Entity, chat::Column::Title), query))
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

    /// Creates a chat from an export, with its messages in their order. Replies that were being
    /// written when it was exported are `interrupted`.
    pub async fn import_chat(
        &self,
        session_id: &str,
        imported: ImportedChat,
    ) -> Result<chat::Model, DbErr> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let chat = chat::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.to_owned()),
            title: Set(imported.title),
            created_at: Set(now),
            updated_at: Set(now),
            system_prompt: Set(imported.settings.system_prompt),
            temperature: Set(imported.settings.temperature),
            max_tokens: Set(imported.settings.max_tokens),
            model: Set(imported.settings.model),
        }
        .insert(&txn)
        .await?;
        let rows: Vec<message::ActiveModel> = imported
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let status = match m.status {
                    Status::Streaming => Status::Interrupted,
                    other => other,
                };
                let mut row = new_message(&chat, i as i64 + 1, m.role, &m.content, status);
                row.reasoning = Set(m.reasoning);
                row.error = Set(m.error);
                row.superseded = Set(m.superseded);
                row.created_at = Set(m.created_at);
                row
            })
            .collect();
        // Bounded statements: SQLite allows at most 32,766 bound values in one.
        for batch in rows.chunks(500) {
            insert_messages(&txn, batch.to_vec()).await?;
        }
        txn.commit().await?;
        Ok(chat)
    }

    /// Adds a new reply to the latest user message (Regenerate, Retry). Earlier replies stay.
    pub async fn add_reply(&self, session_id: &str, chat_id: Uuid) -> Result<NewReply, DbErr> {
        let txn = self.db.begin().await?;
        let Some(chat) = lock_chat(&txn, session_id, chat_id).await? else {
            return Ok(NewReply::NoSuchChat);
        };
        let state = chat_state(&txn, chat_id).await?;
        if state.reply_in_progress {
            return Ok(NewReply::Busy);
        }
        if !state.has_user_message {
            return Ok(NewReply::NothingToAnswer);
        }
        let row = self.claimed_reply(&chat, state.last_seq + 1);
        let reply = insert_messages(&txn, vec![row])
            .await?
            .pop()
            .ok_or(DbErr::RecordNotInserted)?;
        txn.commit().await?;
        Ok(NewReply::Started {
            user: None,
            reply: Box::new(reply),
        })
    }

    pub async fn find_message(
        &self,
        session_id: &str,
        chat_id: Uuid,
        message_id: Uuid,
    ) -> Result<Option<message::Model>, DbErr> {
        message::Entity::find_by_id(message_id)
            .filter(message::Column::ChatId.eq(chat_id))
            .filter(message::Column::SessionId.eq(session_id))
            .one(&self.db)
            .await
    }

    /// A message of this session, whatever its chat.
    pub async fn find_session_message(
        &self,
        session_id: &str,
        message_id: Uuid,
    ) -> Result<Option<message::Model>, DbErr> {
        message::Entity::find_by_id(message_id)
            .filter(message::Column::SessionId.eq(session_id))
            .one(&self.db)
            .await
    }

    /// The conversation before position `before`, newest `limit` messages, oldest first: what a
    /// prompt is built from.
    pub async fn prompt_history(
        &self,
        session_id: &str,
        chat_id: Uuid,
        before: i64,
        limit: u64,
    ) -> Result<Vec<message::Model>, DbErr> {
        self.list_messages(session_id, chat_id, Some(before), limit)
            .await
    }

    /// Saves a streaming reply's text (and reasoning) so far.
    pub async fn checkpoint(
        &self,
        session_id: &str,
        message_id: Uuid,
        content: &str,
        reasoning: &str,
    ) -> Result<(), DbErr> {
        message::Entity::update_many()
            .col_expr(message::Column::Content, Expr::value(content.to_owned()))
            .col_expr(
                message::Column::Reasoning,
                Expr::value(non_empty(reasoning)),
            )
            .col_expr(
                message::Column::LeaseExpiresAt,
                Expr::value(self.lease_until()),
            )
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Status.eq(Status::Streaming))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Saves how a reply ended, with its whole text and reasoning.
    pub async fn finish_reply(
        &self,
        session_id: &str,
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
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Start-up recovery, across all sessions: replies this replica was writing when it
    /// stopped, replies from before leases existed, and replies whose owner's lease ran out are
    /// `interrupted`, keeping their checkpointed text. Replies other live replicas are writing
    /// are left alone. Returns how many.
    pub async fn recover_replies(&self) -> Result<u64, DbErr> {
        let mine_or_abandoned = sea_orm::Condition::any()
            .add(message::Column::Owner.eq(self.replica.name.clone()))
            .add(message::Column::Owner.is_null())
            .add(lease_expired());
        self.interrupt_where(mine_or_abandoned).await
    }

    /// Replies whose owner stopped renewing its lease (its replica died) become `interrupted`,
    /// keeping their checkpointed text. Returns how many.
    pub async fn interrupt_expired_replies(&self) -> Result<u64, DbErr> {
        self.interrupt_where(lease_expired()).await
    }

    async fn interrupt_where(&self, condition: sea_orm::Condition) -> Result<u64, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(Status::Interrupted))
            .col_expr(
                message::Column::Error,
                Expr::value(Some(
                    "The app stopped while this reply was being written. You can retry.".to_owned(),
                )),
            )
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .filter(condition)
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected)
    }

    /// Renews this replica's lease on the replies it is writing.
    pub async fn renew_leases(&self, message_ids: &[Uuid]) -> Result<(), DbErr> {
        if message_ids.is_empty() {
            return Ok(());
        }
        message::Entity::update_many()
            .col_expr(
                message::Column::LeaseExpiresAt,
                Expr::value(self.lease_until()),
            )
            .col_expr(
                message::Column::Owner,
                Expr::value(Some(self.replica.name.clone())),
            )
            .filter(message::Column::Id.is_in(message_ids.iter().copied()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Of these replies, the ones Stop was asked for on another replica.
    pub async fn stops_requested(&self, message_ids: &[Uuid]) -> Result<Vec<Uuid>, DbErr> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::Id.is_in(message_ids.iter().copied()))
            .filter(message::Column::StopRequested.eq(true))
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await
    }

    /// Asks the replica writing a reply to stop it (it watches the flag). `false`: the reply is
    /// not being written.
    pub async fn request_stop(&self, session_id: &str, message_id: Uuid) -> Result<bool, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::StopRequested, Expr::value(true))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Status.eq(Status::Streaming))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Stops a reply whose owner is gone (its lease ran out), keeping its saved text. `false`:
    /// it is no longer being written, or its owner is still alive.
    pub async fn stop_abandoned_reply(
        &self,
        session_id: &str,
        message_id: Uuid,
    ) -> Result<bool, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(Status::Stopped))
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Status.eq(Status::Streaming))
            .filter(lease_expired())
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }
}

/// A claim on a reply that nobody holds: no lease (rows from before leases) or a lapsed one.
fn lease_expired() -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(message::Column::LeaseExpiresAt.is_null())
        .add(message::Column::LeaseExpiresAt.lt(Utc::now()))
}

/// Marks the chat active now and returns it. Updating first takes the chat's row lock (PostgreSQL)
/// or the write lock (SQLite), so writers to one chat are serialised and the next `seq` is safe.
async fn lock_chat(
    txn: &impl ConnectionTrait,
    session_id: &str,
    chat_id: Uuid,
) -> Result<Option<chat::Model>, DbErr> {
    Ok(chat::Entity::update_many()
        .col_expr(chat::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(chat::Column::Id.eq(chat_id))
        .filter(chat::Column::SessionId.eq(session_id))
        .exec_with_returning(txn)
        .await?
        .pop())
}

/// What adding to a chat needs to know about its messages.
struct ChatState {
    last_seq: i64,
    reply_in_progress: bool,
    has_user_message: bool,
}

/// One statement of three sub-queries, each an index seek (`(chat_id, seq)`, `(status, chat_id)`),
/// so its cost does not grow with the chat's history.
async fn chat_state(txn: &impl ConnectionTrait, chat_id: Uuid) -> Result<ChatState, DbErr> {
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
    let query = Query::select()
        .expr_as(Expr::SubQuery(None, Box::new(last_seq.into())), "last_seq")
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
        .to_owned();
    let row = txn
        .query_one(&query)
        .await?
        .ok_or_else(|| DbErr::Custom("the chat state query returned no row".into()))?;
    Ok(ChatState {
        last_seq: row.try_get::<Option<i64>>("", "last_seq")?.unwrap_or(0),
        reply_in_progress: row.try_get("", "reply_in_progress")?,
        has_user_message: row.try_get("", "has_user_message")?,
    })
}

fn new_message(
    chat: &chat::Model,
    seq: i64,
    role: Role,
    content: &str,
    status: Status,
) -> message::ActiveModel {
    let now = Utc::now();
    message::ActiveModel {
        id: Set(Uuid::now_v7()),
        chat_id: Set(chat.id),
        session_id: Set(chat.session_id.clone()),
        seq: Set(seq),
        role: Set(role),
        content: Set(content.to_owned()),
        status: Set(status),
        error: Set(None),
        finish_reason: Set(None),
        prompt_tokens: Set(None),
        completion_tokens: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        reasoning: Set(None),
        superseded: Set(false),
        owner: Set(None),
        lease_expires_at: Set(None),
        stop_requested: Set(false),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
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

/// Inserts messages in one statement and returns them in `seq` order.
async fn insert_messages(
    txn: &impl ConnectionTrait,
    rows: Vec<message::ActiveModel>,
) -> Result<Vec<message::Model>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut inserted = message::Entity::insert_many(rows)
        .exec_with_returning(txn)
        .await?;
    // RETURNING promises no order on SQLite.
    inserted.sort_by_key(|m| m.seq);
    Ok(inserted)
}

/// The first words of a message, on one line, at most about 60 characters.
pub fn title_from(content: &str) -> String {
    let one_line = content.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= 60 {
        return one_line;
    }
    let cut: String = one_line.chars().take(60).collect();
    let at_word = match cut.rfind(' ') {
        Some(i) if i > 20 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{at_word}…")
}

#[cfg(test)]
mod tests {
    use super::title_from;

    #[test]
    fn titles_are_short_single_lines_cut_at_a_word() {
        assert_eq!(title_from("  hello\n\tworld  "), "hello world");
        let long = "word ".repeat(30);
        let title = title_from(&long);
        assert!(title.ends_with('…'));
        assert!(title.chars().count() <= 61);
        assert!(!title.contains("wor…"), "cut inside a word: {title}");
        let cjk = "漢".repeat(100);
        assert_eq!(title_from(&cjk).chars().count(), 61);
    }
}

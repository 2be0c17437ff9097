//! Every database query of the app. Each function that touches a visitor's data takes the session
//! id and filters by it, so one session can never read or change another's rows. Knows no HTTP.
//!
//! One file per aggregate, each with its own `impl Store`: `sessions`, `chats`, `exchanges` (the
//! messages), `search`, `transfer` (import) and `leases` (which replica writes which reply). What
//! they share lives here.
mod attachments;
mod chats;
mod devices;
pub mod entities;
mod exchanges;
mod folders;
mod leases;
mod limits;
mod live;
mod search;
mod sessions;
mod shares;
mod transfer;
mod users;
mod versions;

use std::time::Duration;

pub use attachments::FileColumns;
pub use chats::{ChatSettings, NewChat, PageOfChats, TitleCandidate};
use chrono::Utc;
pub use entities::{
    attachment, chat, device, device_link, folder,
    message::{self, Role, Status},
    session, share, usage_day, user,
};
pub use exchanges::{NewReply, ReplyEnd, can_continue};
pub use folders::{Moved, SidebarChats};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait},
};
pub use search::SearchHit;
pub use transfer::{ImportedChat, ImportedMessage};
pub use users::{SignedInAs, USERS_LISTED, UserUsage};
use uuid::Uuid;
pub use versions::{SelectVersion, Versions, imported_off_path, parents_of_a_line};

/// Title of a chat until its first message names it (or the user renames it).
pub const DEFAULT_TITLE: &str = "New chat";
/// A chat gets a generated title only while it has at most this many messages.
pub const TITLE_LOOKAHEAD: u64 = 8;

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    replica: std::sync::Arc<Replica>,
    /// Accounts are on: each reply's tokens are added to its session's day (`usage_days`).
    counts_usage: bool,
}

/// Who this process is among the app's replicas, and how long its claim on a reply it writes
/// lasts without renewal.
#[derive(Clone, Debug)]
pub struct Replica {
    pub name: String,
    pub lease: Duration,
}

impl Store {
    /// Connects to SQLite or PostgreSQL. For SQLite: WAL so readers never wait for the writer, a
    /// busy timeout instead of "database is locked", and enforced foreign keys (cascades).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(max_connections)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings a connection on every checkout: a second hand-over to SQLite's worker
            // thread for every query, for nothing (no server can drop a SQLite connection).
            // PostgreSQL keeps the ping: it is what notices connections a restart, a failover
            // or a proxy broke (app/tests/it/faults.rs) and replaces them.
            .test_before_acquire(!url.starts_with("sqlite:"))
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
            counts_usage: false,
        })
    }

    /// The same database, acting as the replica `replica` (the owner of the replies it starts).
    pub fn for_replica(mut self, replica: Replica) -> Self {
        self.replica = std::sync::Arc::new(replica);
        self
    }

    /// This store adds each reply's tokens to its session's usage (accounts are on).
    pub fn counting_usage(mut self, on: bool) -> Self {
        self.counts_usage = on;
        self
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The end of a lease taken now, by the database's clock (ARCHITECTURE.md "Several replicas"):
    /// replicas whose clocks disagree still agree on when a lease ends. SQLite is one process,
    /// with one clock.
    fn lease_until(&self) -> Expr {
        match self.db.get_database_backend() {
            DbBackend::Postgres => Expr::cust(format!(
                "CURRENT_TIMESTAMP + interval '{} milliseconds'",
                self.replica.lease.as_millis()
            )),
            _ => Expr::value(self.local_lease_until()),
        }
    }

    fn local_lease_until(&self) -> chrono::DateTime<Utc> {
        let lease = chrono::Duration::from_std(self.replica.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
        Utc::now() + lease
    }

    /// Now, by the database's clock (see [`Self::lease_until`]).
    fn db_now(&self) -> Expr {
        match self.db.get_database_backend() {
            DbBackend::Postgres => Expr::cust("CURRENT_TIMESTAMP"),
            _ => Expr::value(Utc::now()),
        }
    }

    /// A claim on a reply that nobody holds: no lease (rows from before leases) or one that
    /// ended by the database's clock.
    fn lease_expired(&self) -> sea_orm::Condition {
        sea_orm::Condition::any()
            .add(message::Column::LeaseExpiresAt.is_null())
            .add(Expr::col(message::Column::LeaseExpiresAt).lt(self.db_now()))
    }

    /// Starts the lease of the new reply `message_id` by the database's clock (its row was
    /// inserted with this process's: a row's values cannot be SQL).
    async fn start_lease(&self, txn: &impl ConnectionTrait, message_id: Uuid) -> Result<(), DbErr> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        message::Entity::update_many()
            .col_expr(message::Column::LeaseExpiresAt, self.lease_until())
            .filter(message::Column::Id.eq(message_id))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// A new reply to write, claimed by this replica.
    fn claimed_reply(&self, chat: &chat::Model, seq: i64) -> message::ActiveModel {
        let mut row = new_message(chat, seq, Role::Assistant, "", Status::Streaming);
        row.owner = Set(Some(self.replica.name.clone()));
        row.lease_expires_at = Set(Some(self.local_lease_until()));
        row
    }

    /// The raw connection, for tests' assertions on rows; the app itself goes through the
    /// functions here, which filter by session.
    #[cfg(feature = "test-support")]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.db, None).await
    }

    /// Migrations the database still lacks (another process, e.g. a migration Job, applies
    /// them when the app runs with `SKIP_MIGRATIONS`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn pending_migrations(&self) -> Result<usize, DbErr> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.len())
    }

    /// Readiness: the database answers a query.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// The pool's connections now: (open, of which idle).
    pub fn pool_connections(&self) -> (u32, usize) {
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            sea_orm::DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        }
    }
}

/// A message row of `chat` at position `seq`, created now, claimed by nobody.
/// A message with every field set, for unit tests to change what they test.
#[cfg(test)]
pub(crate) fn test_message() -> message::Model {
    message::Model {
        id: Uuid::now_v7(),
        chat_id: Uuid::nil(),
        session_id: "s".into(),
        seq: 0,
        role: Role::Assistant,
        content: String::new(),
        status: Status::Complete,
        error: None,
        finish_reason: None,
        prompt_tokens: None,
        completion_tokens: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        reasoning: None,
        superseded: false,
        owner: None,
        lease_expires_at: None,
        stop_requested: false,
        model: None,
        time_to_first_token_ms: None,
        generation_ms: None,
        attachments: None,
        attachment_text: None,
        parent_id: None,
        tool_calls: None,
    }
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
        model: Set(None),
        time_to_first_token_ms: Set(None),
        generation_ms: Set(None),
        attachments: Set(None),
        attachment_text: Set(None),
        parent_id: Set(None),
        tool_calls: Set(None),
    }
}

/// New rows in a line: each follows the one before it, the first `parent` (see
/// `message::Model::parent_id`).
fn in_line(rows: &mut [message::ActiveModel], mut parent: Option<Uuid>) {
    for row in rows {
        row.parent_id = Set(parent);
        parent = row.id.try_as_ref().copied();
    }
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

/// A chat's first title: the first words of its first message, or (a message of files only)
/// the first file's name.
pub fn title_for(content: &str, first_file: Option<&str>) -> String {
    match first_file {
        Some(name) if content.trim().is_empty() => title_from(name),
        _ => title_from(content),
    }
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

//! A version per session that every write to its chats, messages or profile raises, kept by
//! triggers so that no write path can forget it. The app caches a rendered chat page under the
//! version it read first; one indexed read then tells whether the page is still current, on any
//! replica.
//!
//! On PostgreSQL the triggers run BEFORE each row is written: a transaction takes its session's
//! version row lock before any of the session's other rows, so two transactions of one session
//! always lock in the same order and cannot deadlock on each other.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionVersions {
    Table,
    SessionId,
    Version,
}

/// (table, the column naming its session).
const TABLES: [(&str, &str); 3] = [
    ("chats", "session_id"),
    ("messages", "session_id"),
    ("sessions", "id"),
];

fn sqlite_triggers() -> Vec<String> {
    TABLES
        .iter()
        .flat_map(|(table, column)| sqlite_triggers_for(table, column))
        .collect()
}

fn postgres_triggers() -> Vec<String> {
    TABLES
        .iter()
        .flat_map(|(table, column)| postgres_triggers_for(table, column))
        .collect()
}

/// SQLite's triggers raising the session's version on every write to `table`, whose `column`
/// names the session (later migrations add them for their own tables).
pub(crate) fn sqlite_triggers_for(table: &str, column: &str) -> Vec<String> {
    let bump = |row: &str| {
        format!(
            "INSERT INTO session_versions (session_id, version) VALUES ({row}.{column}, 1) \
             ON CONFLICT (session_id) DO UPDATE SET version = version + 1;"
        )
    };
    vec![
        format!(
            "CREATE TRIGGER {table}_version_insert AFTER INSERT ON {table} BEGIN {} END",
            bump("NEW")
        ),
        format!(
            "CREATE TRIGGER {table}_version_update AFTER UPDATE ON {table} BEGIN {} \
             UPDATE session_versions SET version = version + 1 \
             WHERE session_id = OLD.{column} AND OLD.{column} <> NEW.{column}; END",
            bump("NEW")
        ),
        format!(
            "CREATE TRIGGER {table}_version_delete AFTER DELETE ON {table} BEGIN {} END",
            bump("OLD")
        ),
    ]
}

/// PostgreSQL's trigger (and its function) doing the same, before each row is written.
pub(crate) fn postgres_triggers_for(table: &str, column: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE FUNCTION {table}_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF TG_OP <> 'INSERT' THEN
                 INSERT INTO session_versions (session_id, version) VALUES (OLD.{column}, 1)
                 ON CONFLICT (session_id) DO UPDATE SET version = session_versions.version + 1;
               END IF;
               IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.{column} <> OLD.{column}) THEN
                 INSERT INTO session_versions (session_id, version) VALUES (NEW.{column}, 1)
                 ON CONFLICT (session_id) DO UPDATE SET version = session_versions.version + 1;
               END IF;
               IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
               RETURN NEW;
             END $$"
        ),
        format!(
            "CREATE TRIGGER {table}_version BEFORE INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {table}_version_bump()"
        ),
    ]
}

/// The statements dropping what `sqlite_triggers_for` or `postgres_triggers_for` created.
pub(crate) fn drop_triggers_for(backend: DatabaseBackend, table: &str) -> Vec<String> {
    match backend {
        DatabaseBackend::Postgres => vec![
            format!("DROP TRIGGER {table}_version ON {table}"),
            format!("DROP FUNCTION {table}_version_bump()"),
        ],
        _ => ["insert", "update", "delete"]
            .iter()
            .map(|operation| format!("DROP TRIGGER {table}_version_{operation}"))
            .collect(),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SessionVersions::Table)
                    .col(
                        ColumnDef::new(SessionVersions::SessionId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SessionVersions::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Postgres => postgres_triggers(),
            _ => sqlite_triggers(),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (table, _) in TABLES {
            for statement in drop_triggers_for(manager.get_database_backend(), table) {
                db.execute_unprepared(&statement).await?;
            }
        }
        manager
            .drop_table(Table::drop().table(SessionVersions::Table).to_owned())
            .await
    }
}

//! Notifications for the other replicas (`live.rs`): PostgreSQL's `pg_notify`, delivered to
//! every connection listening on the channel when the statement commits.
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use uuid::Uuid;

use super::Store;
use crate::live::STOP_CHANNEL;

impl Store {
    /// PostgreSQL, which several replicas may share (and tell each other things through);
    /// SQLite is one process's.
    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Sends `payloads` on `channel`, in order, in one statement. Nothing on SQLite.
    #[tracing::instrument(level = "debug", skip_all, fields(notifications = payloads.len()))]
    pub async fn notify(&self, channel: &str, payloads: Vec<String>) -> Result<(), DbErr> {
        if !self.is_postgres() || payloads.is_empty() {
            return Ok(());
        }
        let list = serde_json::to_string(&payloads).map_err(|e| DbErr::Custom(e.to_string()))?;
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, payload) FROM json_array_elements_text($2::json) AS payload",
                [channel.into(), list.into()],
            ))
            .await?;
        Ok(())
    }

    /// Tells the replica writing `message_id` that Stop was asked (the flag is set already:
    /// this only makes it act at once).
    pub async fn notify_stop(&self, message_id: Uuid) -> Result<(), DbErr> {
        self.notify(STOP_CHANNEL, vec![message_id.to_string()])
            .await
    }
}

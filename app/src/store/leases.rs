//! Which replica writes which reply: recovery at start-up, expired leases, renewals, and Stop
//! across replicas.

use chrono::Utc;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use uuid::Uuid;

use super::{Status, Store, message};
use crate::domain::SessionId;

impl Store {
    /// Start-up recovery, across all sessions: replies this replica was writing when it
    /// stopped, replies from before leases existed, and replies whose owner's lease ran out are
    /// `interrupted`, keeping their checkpointed text. Replies other live replicas are writing
    /// are left alone. Returns how many.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn recover_replies(&self) -> Result<u64, DbErr> {
        let mine_or_abandoned = sea_orm::Condition::any()
            .add(message::Column::Owner.eq(self.replica.name.clone()))
            .add(message::Column::Owner.is_null())
            .add(self.lease_expired());
        self.interrupt_where(mine_or_abandoned).await
    }

    /// Replies whose owner stopped renewing its lease (its replica died) become `interrupted`,
    /// keeping their checkpointed text. Returns how many.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn interrupt_expired_replies(&self) -> Result<u64, DbErr> {
        self.interrupt_where(self.lease_expired()).await
    }

    async fn interrupt_where(&self, condition: sea_orm::Condition) -> Result<u64, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(Status::Interrupted))
            .col_expr(
                message::Column::Error,
                Expr::value(Some(crate::domain::INTERRUPTED.to_owned())),
            )
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .filter(condition)
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected)
    }

    /// Renews this replica's lease on the replies it is writing.
    #[tracing::instrument(level = "debug", skip_all, fields(replies = message_ids.len()))]
    pub async fn renew_leases(&self, message_ids: &[Uuid]) -> Result<(), DbErr> {
        if message_ids.is_empty() {
            return Ok(());
        }
        message::Entity::update_many()
            .col_expr(message::Column::LeaseExpiresAt, self.lease_until())
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
    #[tracing::instrument(level = "debug", skip_all, fields(replies = message_ids.len()))]
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
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id))]
    pub async fn request_stop(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
    ) -> Result<bool, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::StopRequested, Expr::value(true))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Stops a reply whose owner is gone (its lease ran out), keeping its saved text. `false`:
    /// it is no longer being written, or its owner is still alive.
    #[tracing::instrument(level = "debug", skip_all, fields(%message_id))]
    pub async fn stop_abandoned_reply(
        &self,
        session_id: &SessionId,
        message_id: Uuid,
    ) -> Result<bool, DbErr> {
        let updated = message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(Status::Stopped))
            .col_expr(message::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(message::Column::Id.eq(message_id))
            .filter(message::Column::SessionId.eq(session_id.as_str()))
            .filter(message::Column::Status.eq(Status::Streaming))
            .filter(self.lease_expired())
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }
}

//! Devices (the browsers of a session) and the one-time codes that link another browser.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::{Store, device, device_link};
use crate::domain::SessionId;

impl Store {
    /// A device by its id, whatever its session: the session layer checks each cookie with it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn find_device(&self, device_id: Uuid) -> Result<Option<device::Model>, DbErr> {
        device::Entity::find_by_id(device_id).one(&self.db).await
    }

    /// Records a device of the session (a second insert of the same id changes nothing).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register_device(
        &self,
        session_id: &SessionId,
        device_id: Uuid,
        label: &str,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let row = device::ActiveModel {
            id: Set(device_id),
            session_id: Set(session_id.as_str().to_owned()),
            label: Set(label.to_owned()),
            created_at: Set(now),
            last_used_at: Set(now),
            revoked_at: Set(None),
            user_id: Set(None),
        };
        device::Entity::insert(row)
            .on_conflict(
                OnConflict::column(device::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .try_insert()
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Notes that the device was used now.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn touch_device(&self, device_id: Uuid) -> Result<(), DbErr> {
        device::Entity::update_many()
            .col_expr(device::Column::LastUsedAt, Expr::value(Utc::now()))
            .filter(device::Column::Id.eq(device_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The session's devices that are not signed out, the most recently used first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_devices(&self, session_id: &SessionId) -> Result<Vec<device::Model>, DbErr> {
        device::Entity::find()
            .filter(device::Column::SessionId.eq(session_id.as_str()))
            .filter(device::Column::RevokedAt.is_null())
            .order_by_desc(device::Column::LastUsedAt)
            .all(&self.db)
            .await
    }

    /// Signs one of the session's devices out; `false` when it has no such device signed in.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn revoke_device(
        &self,
        session_id: &SessionId,
        device_id: Uuid,
    ) -> Result<bool, DbErr> {
        let revoked = device::Entity::update_many()
            .col_expr(device::Column::RevokedAt, Expr::value(Some(Utc::now())))
            .filter(device::Column::Id.eq(device_id))
            .filter(device::Column::SessionId.eq(session_id.as_str()))
            .filter(device::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(revoked.rows_affected > 0)
    }

    /// Keeps a new link code (its hash) for the session until `expires_at`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_device_link(
        &self,
        session_id: &SessionId,
        code_hash: String,
        expires_at: DateTime<Utc>,
    ) -> Result<device_link::Model, DbErr> {
        device_link::ActiveModel {
            code_hash: Set(code_hash),
            session_id: Set(session_id.as_str().to_owned()),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(&self.db)
        .await
    }

    /// A link code by its hash, used or not.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn find_device_link(
        &self,
        code_hash: &str,
    ) -> Result<Option<device_link::Model>, DbErr> {
        device_link::Entity::find_by_id(code_hash.to_owned())
            .one(&self.db)
            .await
    }

    /// Uses a link code up, once: the session it links to, or `None` when it is unknown, used
    /// or expired (one statement decides, so two browsers cannot both use it).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn redeem_device_link(&self, code_hash: &str) -> Result<Option<String>, DbErr> {
        let now = Utc::now();
        Ok(device_link::Entity::update_many()
            .col_expr(device_link::Column::UsedAt, Expr::value(Some(now)))
            .filter(device_link::Column::CodeHash.eq(code_hash))
            .filter(device_link::Column::UsedAt.is_null())
            .filter(device_link::Column::ExpiresAt.gt(now))
            .exec_with_returning(&self.db)
            .await?
            .pop()
            .map(|link| link.session_id))
    }

    /// The session's link codes not used yet and not expired, the newest first.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn pending_device_links(
        &self,
        session_id: &SessionId,
    ) -> Result<Vec<device_link::Model>, DbErr> {
        device_link::Entity::find()
            .filter(device_link::Column::SessionId.eq(session_id.as_str()))
            .filter(device_link::Column::UsedAt.is_null())
            .filter(device_link::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(device_link::Column::CreatedAt)
            .all(&self.db)
            .await
    }
}

//! Accounts: users (each owning one session), their devices, a browser's anonymous chats
//! brought into an account, and what each user used per day (quotas, the admins' page).
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::{Store, attachment, chat, device, folder, message, share, usage_day, user};
use crate::domain::SessionId;

/// Who signed in, as the provider or the proxy says.
#[derive(Clone, Debug)]
pub struct SignedInAs {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub in_admin_group: bool,
}

/// A user with what they used, for the admins' page.
#[derive(Clone, Debug)]
pub struct UserUsage {
    pub user: user::Model,
    /// The newest "last used" of their devices.
    pub last_seen: Option<DateTime<Utc>>,
    pub replies_today: i64,
    pub tokens_today: i64,
    pub replies_this_month: i64,
    pub tokens_this_month: i64,
}

/// At most this many users are listed on the admins' page.
pub const USERS_LISTED: u64 = 1000;

impl Store {
    /// The user `who` names, created with a session of their own on first sign-in; otherwise
    /// their e-mail, name and groups are brought up to date. Two replicas signing the same
    /// person in at once end with one row (the subject is unique).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sign_in_user(&self, who: &SignedInAs) -> Result<user::Model, DbErr> {
        let now = Utc::now();
        let row = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            subject: Set(who.subject.clone()),
            email: Set(who.email.clone()),
            name: Set(who.name.clone()),
            session_id: Set(SessionId::random().as_str().to_owned()),
            in_admin_group: Set(who.in_admin_group),
            created_at: Set(now),
            last_sign_in_at: Set(now),
            disabled_at: Set(None),
        };
        user::Entity::insert(row)
            .on_conflict(
                OnConflict::column(user::Column::Subject)
                    .update_columns([
                        user::Column::Email,
                        user::Column::Name,
                        user::Column::InAdminGroup,
                        user::Column::LastSignInAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        // A new name or e-mail shows on pages cached before it: the device this sign-in
        // registers raises the session's version.
        self.find_user_by_subject(&who.subject)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the user just written".into()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn find_user(&self, user_id: Uuid) -> Result<Option<user::Model>, DbErr> {
        user::Entity::find_by_id(user_id).one(&self.db).await
    }

    /// Whether `session_id` is a user's (an account's chats are never "anonymous chats").
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn is_account_session(&self, session_id: &SessionId) -> Result<bool, DbErr> {
        Ok(user::Entity::find()
            .filter(user::Column::SessionId.eq(session_id.as_str()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// A new device signed in to the user's session.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register_user_device(
        &self,
        user_id: Uuid,
        session_id: &SessionId,
        device_id: Uuid,
        label: &str,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        device::ActiveModel {
            id: Set(device_id),
            session_id: Set(session_id.as_str().to_owned()),
            label: Set(label.to_owned()),
            created_at: Set(now),
            last_used_at: Set(now),
            revoked_at: Set(None),
            user_id: Set(Some(user_id)),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn find_user_by_subject(&self, subject: &str) -> Result<Option<user::Model>, DbErr> {
        user::Entity::find()
            .filter(user::Column::Subject.eq(subject))
            .one(&self.db)
            .await
    }

    /// Signs every device of the session out: the number signed out.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn revoke_all_devices(&self, session_id: &SessionId) -> Result<u64, DbErr> {
        revoke_session_devices(&self.db, session_id.as_str()).await
    }

    /// Disables a user (and signs all their devices out, in the same transaction) or enables
    /// them again; `None` when there is no such user.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn set_user_disabled(
        &self,
        user_id: Uuid,
        disabled: bool,
    ) -> Result<Option<user::Model>, DbErr> {
        let txn = self.db.begin().await?;
        let Some(found) = user::Entity::find_by_id(user_id).one(&txn).await? else {
            return Ok(None);
        };
        let mut row: user::ActiveModel = found.clone().into();
        row.disabled_at = Set(disabled.then(Utc::now));
        let updated = row.update(&txn).await?;
        if disabled {
            revoke_session_devices(&txn, &found.session_id).await?;
        }
        txn.commit().await?;
        Ok(Some(updated))
    }

    /// The chats (with their messages, files, shared links and folders) of an anonymous
    /// session, moved into an account's session in one transaction: how many chats moved.
    /// `None` while one of its replies is being written (its task writes to the old session).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn move_chats(&self, from: &SessionId, to: &SessionId) -> Result<Option<u64>, DbErr> {
        let txn = self.db.begin().await?;
        let writing = message::Entity::find()
            .filter(message::Column::SessionId.eq(from.as_str()))
            .filter(message::Column::Status.eq(message::Status::Streaming))
            .one(&txn)
            .await?;
        if writing.is_some() {
            return Ok(None);
        }
        let moved =
            move_session_rows::<chat::Entity>(&txn, chat::Column::SessionId, from, to).await?;
        move_session_rows::<message::Entity>(&txn, message::Column::SessionId, from, to).await?;
        move_session_rows::<attachment::Entity>(&txn, attachment::Column::SessionId, from, to)
            .await?;
        move_session_rows::<share::Entity>(&txn, share::Column::SessionId, from, to).await?;
        move_session_rows::<folder::Entity>(&txn, folder::Column::SessionId, from, to).await?;
        txn.commit().await?;
        Ok(Some(moved))
    }

    /// How many chats a session has (the offer to bring them into an account says it).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn count_session_chats(&self, session_id: &SessionId) -> Result<u64, DbErr> {
        use sea_orm::PaginatorTrait;
        chat::Entity::find()
            .filter(chat::Column::SessionId.eq(session_id.as_str()))
            .count(&self.db)
            .await
    }

    /// Counts one reply for the session on `day` unless that would pass `limit`: `false` when
    /// the quota is used up. One conditional statement decides, so replicas sending at once
    /// cannot pass it together.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn take_reply(
        &self,
        session_id: &SessionId,
        day: &str,
        limit: Option<u64>,
    ) -> Result<bool, DbErr> {
        usage_day::Entity::insert(usage_day::ActiveModel {
            session_id: Set(session_id.as_str().to_owned()),
            day: Set(day.to_owned()),
            replies: Set(0),
            tokens: Set(0),
        })
        .on_conflict(
            OnConflict::columns([usage_day::Column::SessionId, usage_day::Column::Day])
                .do_nothing()
                .to_owned(),
        )
        .try_insert()
        .exec(&self.db)
        .await?;
        let mut update = usage_day::Entity::update_many()
            .col_expr(
                usage_day::Column::Replies,
                Expr::col(usage_day::Column::Replies).add(1),
            )
            .filter(usage_day::Column::SessionId.eq(session_id.as_str()))
            .filter(usage_day::Column::Day.eq(day));
        if let Some(limit) = limit {
            update = update
                .filter(usage_day::Column::Replies.lt(i64::try_from(limit).unwrap_or(i64::MAX)));
        }
        Ok(update.exec(&self.db).await?.rows_affected > 0)
    }

    /// Gives back a reply [`Self::take_reply`] counted (its send failed before anything was
    /// stored).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn give_back_reply(&self, session_id: &SessionId, day: &str) -> Result<(), DbErr> {
        usage_day::Entity::update_many()
            .col_expr(
                usage_day::Column::Replies,
                Expr::col(usage_day::Column::Replies).sub(1),
            )
            .filter(usage_day::Column::SessionId.eq(session_id.as_str()))
            .filter(usage_day::Column::Day.eq(day))
            .filter(usage_day::Column::Replies.gt(0))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Adds the tokens a reply's model wrote to the session's `day`.
    pub(super) async fn add_tokens(
        &self,
        session_id: &SessionId,
        day: &str,
        tokens: i64,
    ) -> Result<(), DbErr> {
        usage_day::Entity::insert(usage_day::ActiveModel {
            session_id: Set(session_id.as_str().to_owned()),
            day: Set(day.to_owned()),
            replies: Set(0),
            tokens: Set(tokens),
        })
        .on_conflict(
            OnConflict::columns([usage_day::Column::SessionId, usage_day::Column::Day])
                .value(
                    usage_day::Column::Tokens,
                    Expr::col((usage_day::Entity, usage_day::Column::Tokens)).add(tokens),
                )
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// What the session used on `day`: replies and tokens (zeros for a day without a row).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn usage_on(&self, session_id: &SessionId, day: &str) -> Result<(i64, i64), DbErr> {
        Ok(
            usage_day::Entity::find_by_id((session_id.as_str().to_owned(), day.to_owned()))
                .one(&self.db)
                .await?
                .map_or((0, 0), |row| (row.replies, row.tokens)),
        )
    }

    /// The users (the most recently signed in first, at most [`USERS_LISTED`]) with their
    /// last use and what they used on `today` and in its month.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn users_with_usage(&self, today: &str) -> Result<Vec<UserUsage>, DbErr> {
        let users = user::Entity::find()
            .order_by_desc(user::Column::LastSignInAt)
            .limit(USERS_LISTED)
            .all(&self.db)
            .await?;
        with_usage(&self.db, users, today).await
    }

    /// One user with their last use and what they used on `today` and in its month.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn user_with_usage(
        &self,
        user: user::Model,
        today: &str,
    ) -> Result<UserUsage, DbErr> {
        let mut one = with_usage(&self.db, vec![user], today).await?;
        one.pop()
            .ok_or_else(|| DbErr::RecordNotFound("user".into()))
    }
}

/// The users with their last use and what they used on `today` and in its month, in their order.
async fn with_usage(
    db: &impl ConnectionTrait,
    users: Vec<user::Model>,
    today: &str,
) -> Result<Vec<UserUsage>, DbErr> {
    let sessions: Vec<&str> = users.iter().map(|u| u.session_id.as_str()).collect();
    let month = today.get(..7).unwrap_or(today);
    let days = usage_day::Entity::find()
        .filter(usage_day::Column::Day.starts_with(month))
        .filter(usage_day::Column::SessionId.is_in(sessions.iter().copied()))
        .all(db)
        .await?;
    let mut used: HashMap<&str, (i64, i64, i64, i64)> = HashMap::new();
    for day in &days {
        let entry = used.entry(day.session_id.as_str()).or_default();
        if day.day == today {
            entry.0 += day.replies;
            entry.1 += day.tokens;
        }
        entry.2 += day.replies;
        entry.3 += day.tokens;
    }
    let seen: Vec<(String, Option<DateTime<Utc>>)> = device::Entity::find()
        .select_only()
        .column(device::Column::SessionId)
        .column_as(device::Column::LastUsedAt.max(), "last_used")
        .filter(device::Column::UserId.is_not_null())
        .filter(device::Column::SessionId.is_in(sessions.iter().copied()))
        .group_by(device::Column::SessionId)
        .into_tuple()
        .all(db)
        .await?;
    let seen: HashMap<String, Option<DateTime<Utc>>> = seen.into_iter().collect();
    Ok(users
        .into_iter()
        .map(|user| {
            let (replies_today, tokens_today, replies_this_month, tokens_this_month) = used
                .get(user.session_id.as_str())
                .copied()
                .unwrap_or_default();
            UserUsage {
                last_seen: seen.get(&user.session_id).copied().flatten(),
                replies_today,
                tokens_today,
                replies_this_month,
                tokens_this_month,
                user,
            }
        })
        .collect())
}

/// Every device of the session not yet signed out, signed out now: how many.
async fn revoke_session_devices(db: &impl ConnectionTrait, session_id: &str) -> Result<u64, DbErr> {
    Ok(device::Entity::update_many()
        .col_expr(device::Column::RevokedAt, Expr::value(Some(Utc::now())))
        .filter(device::Column::SessionId.eq(session_id))
        .filter(device::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected)
}

/// `UPDATE {table} SET session_id = to WHERE session_id = from`: the rows moved.
async fn move_session_rows<E: EntityTrait>(
    db: &impl ConnectionTrait,
    column: E::Column,
    from: &SessionId,
    to: &SessionId,
) -> Result<u64, DbErr> {
    Ok(E::update_many()
        .col_expr(column, Expr::value(to.as_str().to_owned()))
        .filter(column.eq(from.as_str()))
        .exec(db)
        .await?
        .rows_affected)
}

//! Accounts' use cases (`AUTH_MODE=oidc` or `header`, `crate::accounts`): signing a person in,
//! bringing a browser's anonymous chats into their account, signing out (this browser, or
//! everywhere), the admins' list of users and disabling one, and the daily quotas every send
//! passes.
use chrono::Utc;
use uuid::Uuid;

use crate::{
    AppState,
    accounts::oidc::Identity,
    domain::{SessionId, duration_words, until_next_day, utc_day},
    error::{AppError, AppResult},
    operator::Operator,
    session::Session,
    store::{SignedInAs, UserUsage, user},
};

const DISABLED: &str =
    "Your account is disabled, so you cannot sign in. Ask an admin of this app to enable it.";

/// The user the provider vouched for, created on their first sign-in; a disabled one is refused.
#[tracing::instrument(skip_all)]
pub async fn sign_in(state: &AppState, identity: &Identity) -> AppResult<user::Model> {
    let settings = &state.accounts.settings;
    let user = state
        .store
        .sign_in_user(&SignedInAs {
            subject: identity.subject.clone(),
            email: Some(identity.email.clone()),
            name: identity.name.clone(),
            in_admin_group: settings.names_admin_group(&identity.groups),
        })
        .await?;
    if user.disabled_at.is_some() {
        tracing::warn!(user = %user.id, "a disabled user tried to sign in");
        return Err(AppError::Forbidden(DISABLED.into()));
    }
    state.accounts.forget_users();
    tracing::info!(user = %user.id, "signed in");
    Ok(user)
}

/// How many chats an anonymous session has that could be brought into an account (none when
/// `session` is an account's).
#[tracing::instrument(skip_all)]
pub async fn anonymous_chats(state: &AppState, session: &SessionId) -> AppResult<u64> {
    if state.store.is_account_session(session).await? {
        return Ok(0);
    }
    Ok(state.store.count_session_chats(session).await?)
}

/// Brings the chats of `from` (this browser's anonymous session before it signed in) into the
/// signed-in person's account: how many came.
#[tracing::instrument(skip_all)]
pub async fn bring_chats(state: &AppState, session: &Session, from: &SessionId) -> AppResult<u64> {
    if session.account.is_none() {
        return Err(AppError::Unauthorized("Sign in first.".into()));
    }
    if from == &session.id || state.store.is_account_session(from).await? {
        return Ok(0);
    }
    match state.store.move_chats(from, &session.id).await? {
        Some(moved) => Ok(moved),
        None => Err(AppError::Conflict(
            "A reply is still being written in one of those chats: wait until it ends, then bring them in.".into(),
        )),
    }
}

/// Signs this browser (or this API token's device) out of the account.
#[tracing::instrument(skip_all)]
pub async fn sign_out(state: &AppState, session: &Session) -> AppResult<()> {
    if let Some(device) = session.device {
        state.store.revoke_device(&session.id, device).await?;
        state.sessions.devices.forget(device);
    }
    Ok(())
}

/// Signs every browser and API token of the account out: how many were.
#[tracing::instrument(skip_all)]
pub async fn sign_out_everywhere(state: &AppState, session: &Session) -> AppResult<u64> {
    let ended = state.store.revoke_all_devices(&session.id).await?;
    state.sessions.devices.forget_all();
    tracing::info!(ended, "signed out everywhere");
    Ok(ended)
}

/// The users with what they used today and this month (UTC), for an admin.
#[tracing::instrument(skip_all)]
pub async fn users(state: &AppState, _admin: &Operator) -> AppResult<Vec<UserUsage>> {
    Ok(state.store.users_with_usage(&utc_day(Utc::now())).await?)
}

/// Disables a user (every device of theirs signed out at once: here now, on the other
/// replicas within a second) or enables them again.
#[tracing::instrument(skip_all, fields(%user_id, disabled))]
pub async fn set_user_disabled(
    state: &AppState,
    _admin: &Operator,
    by: Option<&Session>,
    user_id: Uuid,
    disabled: bool,
) -> AppResult<UserUsage> {
    let by_user = by.and_then(|s| s.account.as_ref()).map(|a| a.user_id);
    if disabled && by_user == Some(user_id) {
        return Err(AppError::Conflict(
            "You cannot disable yourself: another admin can.".into(),
        ));
    }
    let user = state
        .store
        .set_user_disabled(user_id, disabled)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    state.accounts.forget_users();
    state.sessions.devices.forget_all();
    tracing::info!(user = %user.id, disabled, "an admin changed a user");
    Ok(state
        .store
        .user_with_usage(user, &utc_day(Utc::now()))
        .await?)
}

/// A reply counted against the person's daily quota: given back if what it was for fails
/// before anything is stored.
pub struct TakenReply {
    day: String,
}

/// Checks the daily quotas before a send (accounts on): over one, a 429 that says when it
/// resets, and nothing is stored. Counts the reply in the database otherwise.
pub async fn take_reply(state: &AppState, session: &Session) -> AppResult<Option<TakenReply>> {
    // Counted for every account (the admins' page shows it), limited only when set.
    let quotas = state.accounts.settings.quotas;
    if session.account.is_none() {
        return Ok(None);
    }
    let now = Utc::now();
    let day = utc_day(now);
    let retry_after = until_next_day(now);
    let resets = format!(
        "It starts again at midnight UTC, in {}.",
        duration_words(retry_after)
    );
    if let Some(limit) = quotas.daily_tokens {
        let (_, tokens) = state.store.usage_on(&session.id, &day).await?;
        if u64::try_from(tokens).unwrap_or(0) >= limit {
            return Err(AppError::RateLimited {
                message: format!(
                    "You have used today's {limit} tokens of replies, so this message was not sent. {resets}"
                ),
                retry_after,
            });
        }
    }
    if !state
        .store
        .take_reply(&session.id, &day, quotas.daily_replies)
        .await?
    {
        let limit = quotas.daily_replies.unwrap_or(0);
        return Err(AppError::RateLimited {
            message: format!(
                "You have used today's {limit} replies, so this message was not sent. {resets}"
            ),
            retry_after,
        });
    }
    Ok(Some(TakenReply { day }))
}

/// `result`, having given the reply back to the quota when it failed.
pub async fn kept<T, E: Into<AppError>>(
    state: &AppState,
    session: &Session,
    taken: Option<TakenReply>,
    result: Result<T, E>,
) -> AppResult<T> {
    match result {
        Ok(value) => Ok(value),
        Err(e) => {
            if let Some(taken) = taken
                && let Err(why) = state.store.give_back_reply(&session.id, &taken.day).await
            {
                tracing::warn!(error = %why, "could not give a reply back to the quota");
            }
            Err(e.into())
        }
    }
}

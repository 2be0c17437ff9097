//! `/api/v1/account` (who is signed in, what they used today, their quotas) and, for admins,
//! `/api/v1/users` (everyone, with their use; disable or enable one). Accounts on only.
use axum::{Extension, Json, extract::State};
use chrono::Utc;
use uuid::Uuid;

use super::{ApiPath, ERRORS};
use crate::routes::documents::{AccountJson, UserJson, Users};
use crate::{
    AppState, chat,
    domain::utc_day,
    error::{AppError, AppResult},
    operator::Operator,
    routes::Problem,
    session::Session,
};

/// The person signed in, what they used today (UTC) and their daily quotas.
#[utoipa::path(get, path = "/account", tag = "accounts", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The account", body = AccountJson),
              (status = "4XX", description = "Accounts are off (404)", body = Problem, content_type = ERRORS)))]
pub async fn get_account(
    State(state): State<AppState>,
    session: Session,
) -> AppResult<Json<AccountJson>> {
    let account = session
        .account
        .as_ref()
        .ok_or(AppError::NotFound("account"))?;
    let (replies, tokens) = state
        .store
        .usage_on(&session.id, &utc_day(Utc::now()))
        .await?;
    let quotas = state.accounts.settings.quotas;
    Ok(Json(AccountJson {
        id: account.user_id,
        email: account.email.clone(),
        name: account.name.clone(),
        admin: account.admin,
        replies_today: replies,
        tokens_today: tokens,
        daily_replies: quotas.daily_replies,
        daily_tokens: quotas.daily_tokens,
    }))
}

/// Everyone who has signed in (the most recent first), with what they used. Admins only.
#[utoipa::path(get, path = "/users", tag = "accounts", security(("bearer" = []), ("session_cookie" = []), ("admin_token" = [])),
    responses((status = 200, description = "The users", body = Users),
              (status = "4XX", description = "Not an admin", body = Problem, content_type = ERRORS)))]
pub async fn list_users(State(state): State<AppState>, admin: Operator) -> AppResult<Json<Users>> {
    let users = chat::account::users(&state, &admin).await?;
    Ok(Json(Users {
        users: users
            .into_iter()
            .map(|used| UserJson::new(&state.accounts.settings, used))
            .collect(),
    }))
}

/// Disables a user: every browser and token of theirs is signed out at once, and they cannot
/// sign in until enabled. Admins only.
#[utoipa::path(post, path = "/users/{id}/disable", tag = "accounts", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = []), ("admin_token" = [])),
    responses((status = 200, description = "The user, disabled", body = UserJson),
              (status = "4XX", description = "Not an admin, or no such user", body = Problem, content_type = ERRORS)))]
pub async fn disable_user(
    State(state): State<AppState>,
    admin: Operator,
    by: Option<Extension<Session>>,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<UserJson>> {
    set_disabled(state, admin, by.map(|Extension(s)| s), id, true).await
}

/// Enables a disabled user again. Admins only.
#[utoipa::path(post, path = "/users/{id}/enable", tag = "accounts", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = []), ("admin_token" = [])),
    responses((status = 200, description = "The user, enabled", body = UserJson),
              (status = "4XX", description = "Not an admin, or no such user", body = Problem, content_type = ERRORS)))]
pub async fn enable_user(
    State(state): State<AppState>,
    admin: Operator,
    by: Option<Extension<Session>>,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<UserJson>> {
    set_disabled(state, admin, by.map(|Extension(s)| s), id, false).await
}

async fn set_disabled(
    state: AppState,
    admin: Operator,
    by: Option<Session>,
    id: Uuid,
    disabled: bool,
) -> AppResult<Json<UserJson>> {
    let used = chat::account::set_user_disabled(&state, &admin, by.as_ref(), id, disabled).await?;
    Ok(Json(UserJson::new(&state.accounts.settings, used)))
}

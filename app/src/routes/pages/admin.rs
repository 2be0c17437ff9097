//! `/admin`: the operator's page. Signed in with `ADMIN_TOKEN` (an encrypted cookie,
//! `crate::operator`), it holds the model library's controls: download a GGUF file from the
//! Hugging Face hub (a repository's files listed to choose from), remove a downloaded model,
//! make one the default. Everyone else sees the sign-in form only.
use axum::{
    Form,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::PrivateCookieJar;
use serde::{Deserialize, Serialize};

use crate::{
    AppState, chat,
    error::{AppError, AppResult},
    hub::HubFile,
    operator::{self, Operator, Standing},
    routes::{
        documents::UserJson,
        redirect, render,
        views::{Frame, LibraryView},
    },
    session::Session,
    store::UserUsage,
};

#[derive(Serialize)]
struct AdminPage {
    frame: Frame,
    /// "operator", "visitor" or "none" (no ADMIN_TOKEN).
    standing: &'static str,
    #[serde(flatten)]
    library: LibraryView,
    hub_repo: Option<String>,
    hub_files: Vec<HubFileView>,
    hub_error: Option<String>,
    /// Accounts are on: the users are listed (to an admin), and there is no token form.
    accounts: bool,
    users: Vec<UserView>,
}

/// A user as the admins' table shows them: the API's document, and whether it is the admin
/// looking (they cannot disable themselves).
#[derive(Serialize)]
struct UserView {
    #[serde(flatten)]
    user: UserJson,
    is_you: bool,
    /// `last_seen` as the page writes it.
    seen: Option<String>,
}

impl UserView {
    fn new(state: &AppState, session: &Session, used: UserUsage) -> Self {
        let user = UserJson::new(&state.accounts.settings, used);
        Self {
            is_you: session
                .account
                .as_ref()
                .is_some_and(|a| a.user_id == user.id),
            seen: user
                .last_seen
                .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
            user,
        }
    }
}

#[derive(Serialize)]
struct HubFileView {
    path: String,
    size: Option<String>,
}

impl From<HubFile> for HubFileView {
    fn from(file: HubFile) -> Self {
        Self {
            size: file
                .size_bytes
                .map(|b| crate::domain::size(usize::try_from(b).unwrap_or(usize::MAX))),
            path: file.path,
        }
    }
}

#[derive(Deserialize)]
pub struct AdminQuery {
    /// A hub repository whose GGUF files to list.
    repo: Option<String>,
}

async fn admin_page(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    standing: Standing,
    repo: Option<String>,
) -> AppResult<Response> {
    let sidebar = chat::sidebar(state, session).await?;
    let mut page = AdminPage {
        frame: sidebar.into(),
        standing: match standing {
            Standing::Operator => "operator",
            Standing::NoOperator => "none",
            Standing::Visitor | Standing::WrongToken => "visitor",
            Standing::NotAdmin => "not_admin",
        },
        library: LibraryView::new(Ok(Vec::new()), false),
        hub_repo: None,
        hub_files: Vec::new(),
        hub_error: None,
        accounts: state.accounts.enabled(),
        users: Vec::new(),
    };
    if let Some(operator) = operator::operator_of(state, headers, Some(session)) {
        page.library = LibraryView::new(chat::models(state).await, true);
        if state.accounts.enabled() {
            page.users = chat::account::users(state, &operator)
                .await?
                .into_iter()
                .map(|used| UserView::new(state, session, used))
                .collect();
        }
        if let Some(repo) = repo.filter(|r| !r.trim().is_empty()) {
            match chat::hub_files(state, &operator, &repo).await {
                Ok(files) => page.hub_files = files.into_iter().map(HubFileView::from).collect(),
                Err(e) => page.hub_error = Some(e.to_string()),
            }
            page.hub_repo = Some(repo);
        }
    }
    Ok(render(state, "admin.html", page)?.into_response())
}

/// `GET /admin`.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(query): Query<AdminQuery>,
) -> AppResult<Response> {
    let standing = operator::standing(&state, &headers, Some(&session));
    admin_page(&state, &session, &headers, standing, query.repo).await
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
}

/// `POST /admin`: signs this browser in as the operator.
pub async fn sign_in(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Form(form): Form<SignInForm>,
) -> AppResult<Response> {
    if state.accounts.enabled() {
        return Err(AppError::Forbidden(
            "With accounts, the admins are the people ADMIN_EMAILS or ADMIN_GROUPS name: sign in as one of them.".into(),
        ));
    }
    let configured = state.config.admin_token.as_deref();
    if operator::is_admin_token(configured, form.token.trim()) {
        tracing::info!("a browser signed in as the operator");
        let jar = operator::sign_in(jar, state.config.cookie_secure);
        return Ok((jar, redirect(false, "/admin")).into_response());
    }
    Err(AppError::Forbidden(match configured {
        None => "No operator is configured: set ADMIN_TOKEN on the server.".into(),
        Some(_) => "That is not the operator's token.".into(),
    }))
}

/// `POST /admin/signout`.
pub async fn sign_out(jar: PrivateCookieJar) -> Response {
    (operator::sign_out(jar), redirect(false, "/admin")).into_response()
}

#[derive(Deserialize)]
pub struct DownloadForm {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    file: String,
}

/// `POST /admin/models`: downloads a file from the hub.
pub async fn download(
    State(state): State<AppState>,
    operator: Operator,
    Form(form): Form<DownloadForm>,
) -> AppResult<Response> {
    chat::download_model(&state, &operator, &form.repo, &form.file).await?;
    Ok(redirect(false, "/admin"))
}

/// `POST /admin/models/{id}/delete`.
pub async fn remove(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> AppResult<Response> {
    chat::remove_model(&state, &operator, &id).await?;
    Ok(redirect(false, "/admin"))
}

/// `POST /admin/models/{id}/default`.
pub async fn make_default(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> AppResult<Response> {
    chat::set_default_model(&state, &operator, &id).await?;
    Ok(redirect(false, "/admin"))
}

/// `POST /admin/users/{id}/disable`: the user is signed out everywhere and refused from now on.
pub async fn disable_user(
    State(state): State<AppState>,
    operator: Operator,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| AppError::NotFound("user"))?;
    chat::account::set_user_disabled(&state, &operator, Some(&session), id, true).await?;
    Ok(redirect(false, "/admin#users"))
}

/// `POST /admin/users/{id}/enable`.
pub async fn enable_user(
    State(state): State<AppState>,
    operator: Operator,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| AppError::NotFound("user"))?;
    chat::account::set_user_disabled(&state, &operator, Some(&session), id, false).await?;
    Ok(redirect(false, "/admin#users"))
}

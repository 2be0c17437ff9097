//! The visitor's display name, kept with the session and shown on their messages.
use crate::{AppState, domain::DisplayName, error::AppResult, session::Session};

#[tracing::instrument(skip_all)]
pub async fn set_display_name(
    state: &AppState,
    session: &Session,
    name: Option<&DisplayName>,
) -> AppResult<()> {
    let name = name.map(DisplayName::as_str);
    Ok(state.store.set_display_name(&session.id, name).await?)
}

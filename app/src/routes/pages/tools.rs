//! The Tools page: what replies may call (built in, and each MCP server's), and each MCP
//! server's state, so that a server that failed is named with why.
use axum::{extract::State, response::Html};
use serde::Serialize;

use crate::{
    AppState, chat,
    error::AppResult,
    routes::{render, views::Frame},
    session::Session,
};

#[derive(Serialize)]
struct ToolsPage {
    frame: Frame,
    #[serde(flatten)]
    overview: chat::ToolsOverview,
}

/// `GET /tools`.
pub async fn list(State(state): State<AppState>, session: Session) -> AppResult<Html<String>> {
    let sidebar = chat::sidebar(&state, &session).await?;
    let page = ToolsPage {
        frame: sidebar.into(),
        overview: chat::tools(&state),
    };
    render(&state, "tools.html", page)
}

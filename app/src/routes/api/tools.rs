//! The tools replies may call and the MCP servers behind them.
use axum::{Json, extract::State};

use crate::{AppState, chat};

/// The tools the model is offered now (built in, and the MCP servers'), and each MCP server
/// with its state: running, starting, or failed and why (it is started again after a pause).
#[utoipa::path(get, path = "/tools", tag = "tools", security(("bearer" = []), ("session_cookie" = []), ("admin_token" = [])),
    responses((status = 200, description = "The tools and servers", body = chat::ToolsOverview)))]
pub async fn list_tools(State(state): State<AppState>) -> Json<chat::ToolsOverview> {
    Json(chat::tools(&state))
}

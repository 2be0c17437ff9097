//! The tools replies may call, as the tools page and the API show them: each tool (built in,
//! or an MCP server's, by the name the model calls it), and each MCP server with its state.
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AppState, tools::ServerStatus};

#[derive(Serialize, ToSchema, Debug)]
pub struct ToolsOverview {
    /// What the model is offered now.
    pub tools: Vec<ToolInfo>,
    /// The MCP servers of `MCP_SERVERS`.
    pub servers: Vec<ServerJson>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct ToolInfo {
    #[schema(example = "fetch_url")]
    pub name: String,
    pub description: String,
}

/// An MCP server as the operator's file names it, and where it is.
#[derive(Serialize, ToSchema, Debug)]
pub struct ServerJson {
    pub name: String,
    /// "starting", "running" or "failed" (it is started again after a pause).
    #[schema(example = "running")]
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Its tools (their names on the server).
    pub tools: Vec<String>,
    /// Tools left out, each with why (e.g. an input schema that is not an object schema).
    pub skipped: Vec<String>,
    /// Each call of its tools waits for the person to allow or deny it.
    pub approve: bool,
}

impl From<ServerStatus> for ServerJson {
    fn from(s: ServerStatus) -> Self {
        Self {
            name: s.name,
            state: s.state.into(),
            error: s.error,
            tools: s.tools,
            skipped: s.skipped,
            approve: s.approve,
        }
    }
}

/// The tools and servers now.
pub fn tools(state: &AppState) -> ToolsOverview {
    ToolsOverview {
        tools: state
            .tools
            .definitions()
            .into_iter()
            .map(|d| ToolInfo {
                name: d.name,
                description: d.description,
            })
            .collect(),
        servers: state.tools.servers().into_iter().map(Into::into).collect(),
    }
}

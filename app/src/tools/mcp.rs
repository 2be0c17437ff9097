//! MCP servers (the Model Context Protocol, through the official Rust SDK `rmcp`): the ones the
//! operator lists in the file `MCP_SERVERS` names, in the `mcpServers` shape Claude Desktop,
//! VS Code and Cursor read (`command`/`args`/`env` for a program spoken to over stdio,
//! `url`/`headers` for streamable HTTP; our own `approve`). Each server has a supervisor task:
//! it starts the server, lists its tools (again on `tools/list_changed`), and when the server
//! fails to start or dies it says so (the log, the tools page) and starts it again after a
//! growing pause; the other servers go on. A server's stderr goes to the log, never to users.
use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use rmcp::{
    ClientHandler, Peer, RoleClient, ServiceExt,
    model::{CallToolRequestParams, Tool},
    service::NotificationContext,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::ToolOutput;
use crate::lm::ToolDefinition;

/// The operator's file.
#[derive(Deserialize, Debug)]
struct ConfigFile {
    #[serde(rename = "mcpServers")]
    servers: BTreeMap<String, ServerConfig>,
}

/// One server as the file describes it.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A program to start (stdio).
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to the program's environment (which holds only PATH, HOME and the locale
    /// besides: the app's own secrets are not passed on).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A streamable HTTP endpoint.
    pub url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Ask the person before each call of this server's tools.
    #[serde(default)]
    pub approve: bool,
    /// What VS Code and Cursor write; the transport is told by `command` or `url`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A tool a server offers.
#[derive(Clone, Debug)]
pub struct ServerTool {
    /// Its name on the server.
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// Where a server is.
#[derive(Clone, Debug)]
pub enum ServerState {
    Starting,
    Running {
        peer: Peer<RoleClient>,
        tools: Vec<ServerTool>,
        /// Tools left out, and why (an input schema that is not an object schema).
        skipped: Vec<(String, String)>,
    },
    /// It failed to start, or stopped; it is started again after a pause.
    Failed {
        error: String,
    },
}

/// One configured server and what its supervisor knows of it.
pub struct Server {
    pub name: String,
    pub config: ServerConfig,
    state: RwLock<ServerState>,
}

impl Server {
    pub fn state(&self) -> ServerState {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, state: ServerState) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }
}

/// Longest pause before a failed server is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest the start (the handshake and the first list of tools) may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest line of a server's stderr written to the log.
const STDERR_LINE_CHARS: usize = 1_000;

/// Reads the operator's file: the servers in it, or why it cannot be used.
pub fn read_config(path: &Path) -> anyhow::Result<Vec<(String, ServerConfig)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("MCP_SERVERS: {} cannot be read: {e}", path.display()))?;
    let file: ConfigFile = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "MCP_SERVERS: {} is not an mcpServers file: {e}",
            path.display()
        )
    })?;
    for (name, server) in &file.servers {
        match (&server.command, &server.url) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => anyhow::bail!(
                "MCP_SERVERS: the server {name:?} needs either `command` (stdio) or `url` (streamable HTTP)"
            ),
        }
        if !valid_name(name) {
            anyhow::bail!(
                "MCP_SERVERS: the server name {name:?} may hold only letters, digits, `_` and `-`"
            );
        }
    }
    Ok(file.servers.into_iter().collect())
}

/// A name a model can be given as part of a tool's name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Starts a supervisor for each server; they run until `stop` is cancelled.
pub fn start(
    servers: Vec<(String, ServerConfig)>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<Arc<Server>> {
    servers
        .into_iter()
        .map(|(name, config)| {
            let server = Arc::new(Server {
                name,
                config,
                state: RwLock::new(ServerState::Starting),
            });
            let supervised = server.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = supervise(&supervised) => {}
                    _ = stop.cancelled() => {}
                }
            });
            server
        })
        .collect()
}

/// Tells the supervisor that the server's tools changed.
struct Listener {
    changed: tokio::sync::mpsc::UnboundedSender<()>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(());
    }
}

async fn supervise(server: &Server) {
    let mut backoff = Duration::from_secs(1);
    loop {
        server.set(ServerState::Starting);
        let started = tokio::time::Instant::now();
        let why = run(server).await;
        tracing::warn!(server = %server.name, error = %why, retry_in = ?backoff, "MCP server stopped");
        server.set(ServerState::Failed { error: why });
        // A server that ran a good while before it stopped starts again soon.
        if started.elapsed() > Duration::from_secs(120) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs the server until it stops; why it stopped.
async fn run(server: &Server) -> String {
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let listener = Listener { changed };
    let mut child = None;
    let service = if let Some(command) = &server.config.command {
        let mut process = tokio::process::Command::new(command);
        process
            .args(&server.config.args)
            .env_clear()
            .envs(
                ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"]
                    .into_iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .envs(&server.config.env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut spawned = match process.spawn() {
            Ok(spawned) => spawned,
            Err(e) => return format!("{command} could not be started: {e}"),
        };
        let (Some(stdout), Some(stdin)) = (spawned.stdout.take(), spawned.stdin.take()) else {
            return "its standard input and output could not be opened".into();
        };
        if let Some(stderr) = spawned.stderr.take() {
            let name = server.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line: String = line.chars().take(STDERR_LINE_CHARS).collect();
                    tracing::info!(server = %name, "MCP server stderr: {line}");
                }
            });
        }
        child = Some(spawned);
        tokio::time::timeout(START_TIMEOUT, listener.serve((stdout, stdin))).await
    } else if let Some(url) = &server.config.url {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &server.config.headers {
            match (
                reqwest::header::HeaderName::try_from(name.as_str()),
                reqwest::header::HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.insert(name, value);
                }
                _ => return format!("the header {name:?} is not a valid HTTP header"),
            }
        }
        let http = match reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .build()
        {
            Ok(http) => http,
            Err(e) => return format!("no HTTP client: {e}"),
        };
        let transport = StreamableHttpClientTransport::with_client(
            http,
            StreamableHttpClientTransportConfig::with_uri(url.as_str()),
        );
        tokio::time::timeout(START_TIMEOUT, listener.serve(transport)).await
    } else {
        return "neither command nor url".into();
    };
    let service = match service {
        Err(_) => {
            return format!(
                "it did not complete the MCP handshake within {}",
                humantime::format_duration(START_TIMEOUT)
            );
        }
        Ok(Err(e)) => return format!("the MCP handshake failed: {e}"),
        Ok(Ok(service)) => service,
    };
    let peer = service.peer().clone();
    let mut quit = tokio::spawn(service.waiting());
    loop {
        match tokio::time::timeout(START_TIMEOUT, peer.list_all_tools()).await {
            Ok(Ok(listed)) => {
                let (tools, skipped) = usable_tools(listed);
                tracing::info!(server = %server.name, tools = tools.len(), skipped = skipped.len(), "MCP server ready");
                for (tool, why) in &skipped {
                    tracing::warn!(server = %server.name, tool = %tool, "MCP tool left out: {why}");
                }
                server.set(ServerState::Running {
                    peer: peer.clone(),
                    tools,
                    skipped,
                });
            }
            Ok(Err(e)) => return format!("listing its tools failed: {e}"),
            Err(_) => return "listing its tools took too long".into(),
        }
        tokio::select! {
            changed = changes.recv() => {
                if changed.is_none() {
                    return "it closed the connection".into();
                }
            }
            ended = &mut quit => {
                let status = match child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => format!(" ({status})"),
                    _ => String::new(),
                };
                return match ended {
                    Ok(reason) => format!("it stopped{status}: {reason:?}"),
                    Err(e) => format!("it stopped{status}: {e}"),
                };
            }
        }
    }
}

/// The tools a model can be offered (an object schema for their arguments), and the others
/// with why not.
fn usable_tools(listed: Vec<Tool>) -> (Vec<ServerTool>, Vec<(String, String)>) {
    let mut tools = Vec::new();
    let mut skipped = Vec::new();
    for tool in listed {
        let name = tool.name.to_string();
        let schema = Value::Object((*tool.input_schema).clone());
        let why_not = if !valid_name(&name) && name.len() > 64 {
            Some("its name is longer than 64 characters".to_owned())
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            Some("its name holds characters a model cannot call".to_owned())
        } else if schema.get("type").and_then(Value::as_str) != Some("object") {
            Some("its input schema is not an object schema".to_owned())
        } else if schema.get("properties").is_some_and(|p| !p.is_object()) {
            Some("its input schema's properties are not an object".to_owned())
        } else {
            None
        };
        match why_not {
            Some(why) => skipped.push((name, why)),
            None => tools.push(ServerTool {
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                name,
                parameters: schema,
            }),
        }
    }
    (tools, skipped)
}

impl ServerTool {
    /// As the model is offered it, under `exposed` (its name, or prefixed by its server's).
    pub fn definition(&self, exposed: &str) -> ToolDefinition {
        ToolDefinition {
            name: exposed.to_owned(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
        }
    }
}

/// Calls `tool` on the server. Dropping the future cancels the call: rmcp then sends the
/// server `notifications/cancelled`.
pub async fn call(
    server: &Server,
    tool: &str,
    arguments: serde_json::Map<String, Value>,
) -> ToolOutput {
    let ServerState::Running { peer, .. } = server.state() else {
        return ToolOutput::error(format!(
            "The tool server {} is not running right now.",
            server.name
        ));
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    match peer.call_tool(params).await {
        Ok(result) => {
            let result = serde_json::to_value(&result).unwrap_or_default();
            ToolOutput {
                text: result_text(&result),
                is_error: result["isError"].as_bool().unwrap_or(false),
            }
        }
        Err(e) => ToolOutput::error(format!(
            "The tool server {} failed during the call: {e}",
            server.name
        )),
    }
}

/// A result's content as text: text as it is, other content named.
fn result_text(result: &Value) -> String {
    let mut parts = Vec::new();
    for block in result["content"].as_array().into_iter().flatten() {
        let part = match block["type"].as_str() {
            Some("text") => block["text"].as_str().unwrap_or_default().to_owned(),
            Some(kind @ ("image" | "audio")) => format!(
                "[{kind}: {}]",
                block["mimeType"].as_str().unwrap_or("unknown type")
            ),
            Some("resource") => match block["resource"]["text"].as_str() {
                Some(text) => text.to_owned(),
                None => format!(
                    "[resource: {}]",
                    block["resource"]["uri"].as_str().unwrap_or_default()
                ),
            },
            Some("resource_link") => {
                format!("[link: {}]", block["uri"].as_str().unwrap_or_default())
            }
            _ => block.to_string(),
        };
        parts.push(part);
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        return structured.to_string();
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_the_mcp_servers_shape_and_each_server_needs_one_transport() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("mcp.json");
        std::fs::write(
            &path,
            r#"{"mcpServers": {
                "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
                "remote": {"type": "http", "url": "https://mcp.example/mcp", "headers": {"Authorization": "Bearer x"}, "approve": true}
            }}"#,
        )
        .expect("written");
        let servers = read_config(&path).expect("read");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].0, "remote");
        assert!(servers[0].1.approve);
        assert_eq!(servers[1].1.args, ["mcp-server-time"]);
        for (text, why) in [
            (r#"{"mcpServers": {"x": {}}}"#, "either `command`"),
            (
                r#"{"mcpServers": {"x": {"command": "a", "url": "b"}}}"#,
                "either `command`",
            ),
            (
                r#"{"mcpServers": {"a b": {"command": "a"}}}"#,
                "may hold only",
            ),
            (r#"{"servers": {}}"#, "not an mcpServers file"),
            (
                r#"{"mcpServers": {"x": {"command": "a", "comand": "b"}}}"#,
                "unknown field",
            ),
        ] {
            std::fs::write(&path, text).expect("written");
            let error = read_config(&path).expect_err(text).to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn tools_whose_schema_is_not_an_object_schema_are_left_out() {
        let tool = |name: &str, schema: Value| {
            let Value::Object(schema) = schema else {
                unreachable!()
            };
            Tool::new(name.to_owned(), "d".to_owned(), Arc::new(schema))
        };
        let (tools, skipped) = usable_tools(vec![
            tool(
                "good",
                serde_json::json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            ),
            tool("string", serde_json::json!({"type": "string"})),
            tool(
                "props",
                serde_json::json!({"type": "object", "properties": "nope"}),
            ),
            tool("bad name!", serde_json::json!({"type": "object"})),
        ]);
        let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        let skipped: Vec<_> = skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["string", "props", "bad name!"]);
    }

    #[test]
    fn results_are_text_whatever_their_content() {
        let result = serde_json::json!({"content": [
            {"type": "text", "text": "12:00"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a", "text": "inside"}},
        ]});
        assert_eq!(result_text(&result), "12:00\n[image: image/png]\ninside");
        let structured = serde_json::json!({"content": [], "structuredContent": {"a": 1}});
        assert_eq!(result_text(&structured), r#"{"a":1}"#);
    }
}

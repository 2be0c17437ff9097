//! A chat as a download (Markdown to read, JSON to keep) and a JSON export imported as a new
//! chat. The JSON export is the format other tools may rely on: `format`, `version`, `title`,
//! `settings` (a chat's [`ChatSettings`]), `messages` (each with its `attachments`, base64).
use std::{collections::HashMap, net::IpAddr};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sea_orm::ActiveEnum;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    AppState,
    attachments::{self, Attachment, AttachmentRef, Limits, Upload},
    domain::{
        ChatSettings, MAX_REPLY_BYTES, MessageText, ReplyStats, Title, ToolStep, reject_nul, size,
    },
    error::{AppError, AppResult},
    limits::Action,
    session::Session,
    store::{
        ImportedChat, ImportedMessage, Role, Status, attachment, chat, imported_off_path, message,
        parents_of_a_line,
    },
};

/// What `format` says in every export.
pub const EXPORT_FORMAT: &str = "chat-export";
pub const EXPORT_VERSION: u32 = 1;

/// A chat as a JSON export: everything needed to import it again.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChatExport {
    /// Always `chat-export`.
    #[schema(example = "chat-export", pattern = "^chat-export$")]
    pub format: String,
    /// Always 1.
    #[schema(example = 1, minimum = 1, maximum = 1)]
    pub version: u32,
    pub title: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub exported_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub settings: ChatSettings,
    pub messages: Vec<ExportMessage>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ExportMessage {
    /// The message's id in the chat it came from; `parent_id`s name it. An import gives every
    /// message a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// The message this one follows (its `id`, earlier in `messages`): messages with the same
    /// parent are versions of one another. An export without any (from before versions, or
    /// another tool's) is read as a line: each message follows the one before it, edited
    /// messages (`superseded`) and several replies to one message read as versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    /// `system`, `user` or `assistant`.
    #[schema(example = "user", pattern = "^(system|user|assistant)$")]
    pub role: String,
    pub content: String,
    /// A reply's reasoning (thinking), apart from its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// `complete` (default), `stopped`, `interrupted` or `error`.
    #[serde(default = "complete")]
    #[schema(
        example = "complete",
        pattern = "^(complete|stopped|interrupted|streaming|error)$"
    )]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Not on the chat's current path (another version is the one shown).
    #[serde(default)]
    pub superseded: bool,
    /// A reply's stats (model, tokens, timings), as the API's messages carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ReplyStats>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// The files sent with a user message, as they were sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ExportAttachment>,
    /// A reply's calls of tools, in order, with their results (as the API's `tool_calls`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolStep>,
}

/// A file of a message, in an export (with its bytes) or a shared link's snapshot (without).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportAttachment {
    pub name: String,
    /// What the app took it for; an import decides again from the bytes.
    #[schema(example = "text/markdown")]
    pub media_type: String,
    pub size_bytes: u64,
    /// The file's bytes, base64 (standard alphabet, padded). Absent in a shared link's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

fn complete() -> String {
    "complete".into()
}

/// The export of a chat and its messages, with the bytes of the files found in `files` (a
/// shared link's snapshot passes none: it names them only).
pub fn export_document(
    chat: &chat::Model,
    messages: &[message::Model],
    files: &HashMap<Uuid, attachment::Model>,
) -> ChatExport {
    let export_file = |r: AttachmentRef| ExportAttachment {
        data: files
            .get(&r.id)
            .map(|f| base64::engine::general_purpose::STANDARD.encode(&f.data)),
        name: r.name,
        media_type: r.media_type,
        size_bytes: r.size_bytes,
    };
    ChatExport {
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        title: chat.title.clone(),
        created_at: Some(chat.created_at),
        exported_at: Some(Utc::now()),
        settings: chat.settings(),
        messages: messages
            .iter()
            .map(|m| ExportMessage {
                id: Some(m.id),
                parent_id: m.parent_id,
                role: m.role.to_value(),
                content: m.content.clone(),
                reasoning: m.reasoning.clone(),
                status: m.status.to_value(),
                error: m.error.clone(),
                superseded: m.superseded,
                stats: m.stats(),
                created_at: Some(m.created_at),
                attachments: m.attachment_refs().into_iter().map(export_file).collect(),
                tool_calls: m.tool_steps(),
            })
            .collect(),
    }
}

/// A chat as Markdown, for people: the title, then each message under its author.
pub fn export_markdown(chat: &chat::Model, messages: &[message::Model]) -> String {
    let mut out = format!("# {}\n\n", chat.title.replace('\n', " "));
    out.push_str(&format!(
        "_Exported {}; the chat began {}._\n\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        chat.created_at.format("%Y-%m-%d %H:%M UTC")
    ));
    if let Some(prompt) = &chat.system_prompt {
        out.push_str("**System prompt:**\n\n");
        out.push_str(&quote(prompt));
        out.push_str("\n\n");
    }
    // For people: the chat as it reads now, its other versions left out.
    for m in messages.iter().filter(|m| !m.superseded) {
        let author = match m.role {
            Role::User => "You",
            Role::Assistant => "Assistant",
            Role::System => "System",
        };
        out.push_str(&format!("## {author}\n\n"));
        if let Some(reasoning) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
            out.push_str("**Thinking:**\n\n");
            out.push_str(&quote(reasoning));
            out.push_str("\n\n");
        }
        let files = m.attachment_refs();
        if !files.is_empty() {
            let names: Vec<String> = files
                .iter()
                .map(|f| format!("{} ({})", f.name, size(f.size_bytes as usize)))
                .collect();
            out.push_str(&format!("_Attached: {}._\n\n", names.join(", ")));
        }
        for step in m.tool_steps() {
            let outcome = match (&step.result, step.is_error) {
                (None, _) => "did not finish".to_owned(),
                (Some(_), true) => "failed".to_owned(),
                (Some(_), false) => step
                    .duration_ms
                    .map_or("done".to_owned(), |ms| format!("{ms} ms")),
            };
            out.push_str(&format!(
                "_Called `{}` ({outcome}) with:_\n\n{}\n\n",
                step.name.replace('`', "'"),
                quote(&step.arguments)
            ));
            if let Some(result) = &step.result {
                out.push_str(&format!("_Result:_\n\n{}\n\n", quote(result)));
            }
        }
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
        match m.status {
            Status::Stopped => out.push_str("_(Stopped.)_\n\n"),
            Status::Interrupted => out.push_str("_(Interrupted.)_\n\n"),
            Status::Streaming => out.push_str("_(Still being written when exported.)_\n\n"),
            Status::Error => out.push_str(&format!(
                "_(Failed: {}.)_\n\n",
                m.error.as_deref().unwrap_or("unknown error")
            )),
            Status::Complete => {}
        }
    }
    out
}

/// Every line as a Markdown quote.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Messages one import may hold at most.
pub const MAX_IMPORTED_MESSAGES: usize = 10_000;

/// Turns an export into a chat to create, or says what is wrong with it.
async fn parse_export(state: &AppState, export: ChatExport) -> AppResult<ImportedChat> {
    // Files are checked like files sent now, except that images stay (a model that cannot see
    // is told they are left out) and each message may carry as many as it did.
    let limits = state.config.attachment_limits();
    let pdf = state.config.pdf_limits();
    if export.format != EXPORT_FORMAT || export.version != EXPORT_VERSION {
        return Err(AppError::Invalid(format!(
            "This is not a chat export this app can read (format “{}”, version {}; expected “{EXPORT_FORMAT}”, version {EXPORT_VERSION}).",
            export.format, export.version
        )));
    }
    let title = match Title::parse(&export.title) {
        Ok(title) => title.as_str().to_owned(),
        Err(_) if export.title.trim().is_empty() => "Imported chat".to_owned(),
        Err(e) => return Err(e),
    };
    if export.messages.len() > MAX_IMPORTED_MESSAGES {
        return Err(AppError::TooLarge(format!(
            "An import can hold at most {MAX_IMPORTED_MESSAGES} messages; this one has {}.",
            export.messages.len()
        )));
    }
    let now = Utc::now();
    let mut messages = Vec::with_capacity(export.messages.len());
    // Each message's position by its id in the export, for the `parent_id`s after it.
    let mut positions: HashMap<Uuid, usize> = HashMap::new();
    let mut has_parents = false;
    for (i, m) in export.messages.into_iter().enumerate() {
        let at = |what: String| AppError::Invalid(format!("Message {}: {what}", i + 1));
        // The same errors as a send's, saying which message.
        let in_message = |e: AppError| match e {
            AppError::TooLarge(what) => AppError::TooLarge(format!("Message {}: {what}", i + 1)),
            AppError::Invalid(what) => at(what),
            other => other,
        };
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            other => {
                return Err(at(format!(
                    "the role “{other}” is not one of user, assistant, system."
                )));
            }
        };
        let status = match m.status.as_str() {
            "complete" => Status::Complete,
            "stopped" => Status::Stopped,
            "interrupted" | "streaming" => Status::Interrupted,
            "error" => Status::Error,
            other => {
                return Err(at(format!(
                    "the status “{other}” is not one of complete, stopped, interrupted, error."
                )));
            }
        };
        for text in [Some(&m.content), m.reasoning.as_ref(), m.error.as_ref()]
            .into_iter()
            .flatten()
        {
            reject_nul(text).map_err(|e| at(e.to_string()))?;
        }
        // What a person wrote is held to a send's limits; what the model wrote, to what a reply
        // is shown formatted at most.
        match role {
            Role::User | Role::System => {
                let has_files = !m.attachments.is_empty();
                MessageText::parse_with_files(
                    m.content.clone(),
                    state.config.max_message_bytes,
                    has_files,
                )
                .map_err(in_message)?;
            }
            Role::Assistant => {
                for text in [Some(&m.content), m.reasoning.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if text.len() > MAX_REPLY_BYTES {
                        return Err(AppError::TooLarge(format!(
                            "Message {}: that reply is {}; the limit is {}.",
                            i + 1,
                            size(text.len()),
                            size(MAX_REPLY_BYTES)
                        )));
                    }
                }
            }
        }
        if role != Role::User && !m.attachments.is_empty() {
            return Err(at("only a person's messages carry files.".into()));
        }
        let tool_steps = checked_steps(role, &m.content, m.tool_calls).map_err(at)?;
        let parent = match m.parent_id {
            Some(parent_id) => {
                has_parents = true;
                Some(positions.get(&parent_id).copied().ok_or_else(|| {
                    at("its parent_id is not the id of a message before it.".into())
                })?)
            }
            None => None,
        };
        if let Some(id) = m.id {
            positions.insert(id, i);
        }
        let attachments = import_attachments(m.attachments, limits, &pdf)
            .await
            .map_err(in_message)?;
        messages.push(ImportedMessage {
            parent,
            attachments,
            role,
            content: m.content,
            reasoning: m.reasoning.filter(|r| !r.is_empty()),
            status,
            error: m.error,
            superseded: m.superseded,
            // Only replies have stats; what an import says of them is checked, not trusted.
            stats: (role == Role::Assistant)
                .then_some(m.stats)
                .flatten()
                .and_then(ReplyStats::checked),
            created_at: m.created_at.unwrap_or(now),
            tool_steps,
        });
    }
    // Without parents the export is a line (from before versions, or another tool's).
    if !has_parents {
        let line: Vec<(Role, bool)> = messages.iter().map(|m| (m.role, m.superseded)).collect();
        for (m, parent) in messages.iter_mut().zip(parents_of_a_line(&line)) {
            m.parent = parent;
        }
    }
    let parents: Vec<Option<usize>> = messages.iter().map(|m| m.parent).collect();
    let superseded: Vec<bool> = messages.iter().map(|m| m.superseded).collect();
    for (m, off_path) in messages
        .iter_mut()
        .zip(imported_off_path(&parents, &superseded))
    {
        m.superseded = off_path;
    }
    // The settings are checked like the settings form's; a model this server does not serve
    // falls back to the default rather than making the chat unusable.
    let mut requested = export.settings;
    if let Some(model) = &requested.model {
        let served = state
            .lm
            .models()
            .await
            .is_ok_and(|models| models.iter().any(|m| &m.id == model));
        if !served {
            requested.model = None;
        }
    }
    let current = requested.model.clone();
    let settings = super::settings::checked(state, current.as_deref(), requested).await?;
    Ok(ImportedChat {
        title,
        settings,
        messages,
    })
}

/// Most calls of tools one imported reply may carry.
const MAX_IMPORTED_STEPS: usize = 512;

/// A reply's calls of tools as an import gives them: only replies have them, each within
/// bounds (names and ids short, arguments and results no longer than a reply, no NUL), its place
/// in the text a character boundary of it (else its end).
fn checked_steps(role: Role, content: &str, steps: Vec<ToolStep>) -> Result<Vec<ToolStep>, String> {
    if steps.is_empty() {
        return Ok(steps);
    }
    if role != Role::Assistant {
        return Err("only a reply carries calls of tools.".into());
    }
    if steps.len() > MAX_IMPORTED_STEPS {
        return Err(format!(
            "it carries {} calls of tools; at most {MAX_IMPORTED_STEPS} are imported.",
            steps.len()
        ));
    }
    steps
        .into_iter()
        .map(|mut step| {
            if step.id.is_empty()
                || step.id.len() > 200
                || step.name.is_empty()
                || step.name.len() > 200
            {
                return Err("a call of a tool needs an id and a name of at most 200 bytes.".into());
            }
            for text in [
                Some(&step.id),
                Some(&step.name),
                Some(&step.arguments),
                step.result.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                reject_nul(text).map_err(|e| e.to_string())?;
                if text.len() > MAX_REPLY_BYTES {
                    return Err(format!(
                        "a call of a tool is {}; the limit is {}.",
                        size(text.len()),
                        size(MAX_REPLY_BYTES)
                    ));
                }
            }
            if !content.is_char_boundary(step.at) {
                step.at = content.len();
            }
            // An import cannot leave a call running.
            if step.result.is_none() {
                step.result = Some("The call did not finish.".into());
                step.is_error = true;
            }
            Ok(step)
        })
        .collect()
}

/// An export's files, decoded and read like uploads (blocking: PDFs' text).
async fn import_attachments(
    files: Vec<ExportAttachment>,
    limits: Limits,
    pdf: &crate::pdf_text::PdfLimits,
) -> AppResult<Vec<Attachment>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut uploads = Vec::with_capacity(files.len());
    for file in files {
        let Some(data) = file.data else {
            return Err(AppError::Invalid(format!(
                "the file “{}” has no data.",
                file.name
            )));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|_| {
                AppError::Invalid(format!("the file “{}” is not valid base64.", file.name))
            })?;
        uploads.push(Upload {
            name: file.name,
            bytes: bytes.into(),
        });
    }
    attachments::prepare_off_thread(uploads, limits, true, pdf).await
}

/// Creates a chat from an export (counts as creating a chat for the rate limits).
#[tracing::instrument(skip_all)]
pub async fn import(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    export: ChatExport,
) -> AppResult<chat::Model> {
    // Counted first: a refused import reads nothing (no file's text is extracted).
    state
        .rate_limits
        .check(Action::CreateChat, &session.id, address)
        .await?;
    let imported = parse_export(state, export).await?;
    Ok(state.store.import_chat(&session.id, imported).await?)
}

/// The formats a chat exports to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    Json,
}

impl ExportFormat {
    /// `md` (the default, also `markdown`) or `json`.
    pub fn parse(format: Option<&str>) -> AppResult<Self> {
        match format.unwrap_or("md") {
            "md" | "markdown" => Ok(Self::Markdown),
            "json" => Ok(Self::Json),
            other => Err(AppError::Invalid(format!(
                "Exports come as md or json, not “{other}”."
            ))),
        }
    }
}

/// An export, ready to download.
pub struct Export {
    pub body: String,
    pub content_type: &'static str,
    /// `<words of the title>.<md|json>`: ASCII only, safe in a header.
    pub file_name: String,
}

/// A chat and all its messages (every version) in `format`.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn export(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    format: ExportFormat,
) -> AppResult<Export> {
    let chat = super::find(state, session, chat_id).await?;
    let messages = state.store.list_all_messages(&session.id, chat_id).await?;
    let (body, content_type, extension) = match format {
        ExportFormat::Markdown => (
            export_markdown(&chat, &messages),
            "text/markdown; charset=utf-8",
            "md",
        ),
        ExportFormat::Json => {
            let files = state
                .store
                .chat_attachments(&session.id, chat_id)
                .await?
                .into_iter()
                .map(|f| (f.id, f))
                .collect();
            let document = export_document(&chat, &messages, &files);
            let json = serde_json::to_string_pretty(&document)
                .map_err(|e| AppError::Internal(anyhow::anyhow!("writing an export: {e}")))?;
            (json, "application/json", "json")
        }
    };
    Ok(Export {
        body,
        content_type,
        file_name: format!("{}.{extension}", file_name(&chat.title)),
    })
}

/// A file name from a title: ASCII letters, digits and dashes, at most 60; `chat` if none.
pub fn file_name(title: &str) -> String {
    let mut name = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
        if name.len() >= 60 {
            break;
        }
    }
    let name = name.trim_matches('-');
    if name.is_empty() {
        "chat".into()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn file_names_are_plain_ascii() {
        assert_eq!(file_name("Hello, World! Ça va?"), "hello-world-a-va");
        assert_eq!(file_name("漢字"), "chat");
        assert_eq!(file_name("\"; rm -rf /"), "rm-rf");
        assert!(file_name(&"x".repeat(500)).len() <= 60);
    }
}

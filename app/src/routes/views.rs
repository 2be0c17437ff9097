//! What the templates are given: use-case results shaped for the pages. Every page's and
//! fragment's context types are here, so the page modules share them without importing each
//! other.
use serde::Serialize;

use crate::{
    AppState,
    chat::{ChatHistory, ExportMessage, LINK_LIFETIME, NewLink, Sidebar},
    domain::{MAX_REPLY_TOKENS, ReplyStats, size},
    generation::ContextUse,
    lm::ModelInfo,
    render::{LiveHtml, Templates, escape_html, markdown_to_html},
    store::{Role, Status, Versions, chat, device, message, share},
};

/// What every page shows around its content: the sidebar and the visitor's name.
#[derive(Serialize)]
pub struct Frame {
    pub pinned: Vec<chat::Model>,
    pub folders: Vec<FolderView>,
    pub chats: Vec<chat::Model>,
    /// There are more chats than the sidebar shows.
    pub more_chats: bool,
    pub display_name: Option<String>,
    /// The person signed in (accounts on).
    pub account: Option<AccountView>,
}

/// Who is signed in, as the sidebar shows it.
#[derive(Serialize)]
pub struct AccountView {
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
    /// A sign-out button (OpenID Connect; a proxy's sign-in is the proxy's).
    pub signs_out: bool,
}

/// A folder in the sidebar, with its chats.
#[derive(Serialize)]
pub struct FolderView {
    pub id: String,
    pub name: String,
    pub chats: Vec<chat::Model>,
}

impl From<Sidebar> for Frame {
    fn from(sidebar: Sidebar) -> Self {
        Self {
            pinned: sidebar.pinned,
            folders: sidebar
                .folders
                .into_iter()
                .map(|f| FolderView {
                    id: f.folder.id.to_string(),
                    name: f.folder.name,
                    chats: f.chats,
                })
                .collect(),
            chats: sidebar.chats,
            more_chats: sidebar.more_chats,
            display_name: sidebar.display_name,
            account: sidebar.account.map(|account| AccountView {
                email: account.email.clone(),
                name: account.name.clone(),
                admin: account.admin,
                signs_out: sidebar.signs_out,
            }),
        }
    }
}

/// A message as the templates show it.
#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub chat_id: String,
    pub role: Role,
    pub status: Status,
    /// Safe HTML: escaped text for user messages and for replies still being written (shown as
    /// they stream), sanitised markdown for finished replies.
    pub html: String,
    /// The reply's reasoning as escaped text; empty when there is none.
    pub reasoning_html: String,
    /// The text as written (the edit form starts from it).
    pub content: String,
    pub error: Option<String>,
    /// Offer Regenerate/Retry (the last reply of a chat that has a user message).
    pub can_regenerate: bool,
    /// The latest reply, stopped or cut at its length: it offers Continue.
    pub can_continue: bool,
    /// Offer Edit (a user message, while no reply is being written).
    pub can_edit: bool,
    /// Show the edit form now (the page without JavaScript, opened at `?edit=`; the form's
    /// fragment).
    pub editing: bool,
    /// `‹ 2/3 ›`: which of its versions this is, for a message with more than one.
    pub versions: Option<VersionsView>,
    /// The model is still writing the chat's title: the page asks for it until it is there.
    pub title_pending: bool,
    /// A finished reply's stats, each a short phrase ("12 ms to first token"); empty for
    /// other messages.
    pub stats: Vec<String>,
    /// Position in the chat (the page marks messages that no longer reach the model by it).
    pub seq: i64,
    /// The messages above this one no longer reach the model: the page draws the line here.
    pub context_boundary_before: bool,
    /// A finished reply just streamed: the page asks for the context gauge again.
    pub refresh_context: bool,
    /// The files sent with a user message, as download chips.
    pub attachments: Vec<AttachmentView>,
    /// A reply's calls of tools, in order.
    pub steps: Vec<super::steps::ToolStepView>,
}

/// A message's versions as its `‹ 2/3 ›` shows them: this one's number, how many, and the
/// ones before and after it (the targets of "Previous version" and "Next version").
#[derive(Serialize, Clone, Debug)]
pub struct VersionsView {
    pub number: usize,
    pub count: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl VersionsView {
    pub fn new(versions: &Versions) -> Self {
        Self {
            number: versions.current + 1,
            count: versions.ids.len(),
            previous: versions.previous().map(|id| id.to_string()),
            next: versions.next().map(|id| id.to_string()),
        }
    }
}

/// A file sent with a message, as its chip shows it: the name, the size, where it downloads
/// (`url` is `None` on a shared link, which names files without sharing them).
#[derive(Serialize, Clone, Debug)]
pub struct AttachmentView {
    pub name: String,
    pub size: String,
    pub url: Option<String>,
}

impl AttachmentView {
    fn new(name: &str, size_bytes: u64, url: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            size: size(usize::try_from(size_bytes).unwrap_or(usize::MAX)),
            url,
        }
    }
}

/// A reply's reasoning rendered as its answer is: as the stream shows it while it is written.
fn reasoning_html(message: &message::Model) -> String {
    let reasoning = message.reasoning.as_deref().unwrap_or_default();
    match (reasoning.is_empty(), message.status) {
        (true, _) => String::new(),
        (false, Status::Streaming) => LiveHtml::html_now(reasoning),
        (false, _) => markdown_to_html(reasoning),
    }
}

impl MessageView {
    pub fn new(templates: &Templates, message: &message::Model) -> Self {
        let html = match (message.role, message.status) {
            // As the page's stream shows it at this point (the no-JavaScript page too).
            (Role::Assistant, Status::Streaming) => LiveHtml::html_now(&message.content),
            (Role::Assistant, _) => templates.finished_reply_html(message.id, &message.content),
            _ => escape_html(&message.content),
        };
        Self {
            id: message.id.to_string(),
            chat_id: message.chat_id.to_string(),
            role: message.role,
            status: message.status,
            html,
            reasoning_html: reasoning_html(message),
            content: if message.role == Role::User {
                message.content.clone()
            } else {
                String::new()
            },
            error: message.error.clone(),
            can_regenerate: false,
            can_continue: false,
            can_edit: false,
            editing: false,
            versions: None,
            title_pending: false,
            seq: message.seq,
            context_boundary_before: false,
            refresh_context: false,
            steps: super::steps::ToolStepView::all(
                &message.tool_steps(),
                Some(&format!(
                    "/chats/{}/messages/{}",
                    message.chat_id, message.id
                )),
            ),
            attachments: message
                .attachment_refs()
                .iter()
                .map(|a| {
                    let url = format!("/chats/{}/attachments/{}", message.chat_id, a.id);
                    AttachmentView::new(&a.name, a.size_bytes, Some(url))
                })
                .collect(),
            stats: match message.status {
                Status::Streaming => Vec::new(),
                _ => message
                    .stats()
                    .map(|s| stats_phrases(&s))
                    .unwrap_or_default(),
            },
        }
    }
}

/// A reply's stats as the page shows them, discreetly, under it.
fn stats_phrases(stats: &ReplyStats) -> Vec<String> {
    let mut phrases = Vec::new();
    if let Some(model) = &stats.model {
        phrases.push(model.clone());
    }
    match (stats.prompt_tokens, stats.completion_tokens) {
        (Some(prompt), Some(completion)) => phrases.push(format!(
            "{} prompt + {} reply tokens",
            grouped(prompt.into()),
            grouped(completion.into())
        )),
        (None, Some(completion)) => {
            phrases.push(format!("{} reply tokens", grouped(completion.into())))
        }
        _ => {}
    }
    if let Some(ms) = stats.time_to_first_token_ms {
        phrases.push(if ms < 10_000 {
            format!("first token in {} ms", grouped(ms.into()))
        } else {
            format!("first token in {:.1} s", f64::from(ms) / 1000.0)
        });
    }
    if let Some(rate) = stats.tokens_per_second {
        phrases.push(format!("{rate:.1} tokens/s"));
    }
    phrases
}

/// A count with thousands separators: 1,234,567.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Renders the finished replies among `messages` off the async workers (the long ones not yet
/// kept), so that building their views finds them kept.
pub async fn render_replies_ahead<'m>(
    templates: &Templates,
    messages: impl IntoIterator<Item = &'m message::Model>,
) {
    // Collected before the await: a future holding the iterator's closures would not be Send.
    let finished: Vec<(uuid::Uuid, &str)> = messages
        .into_iter()
        .filter(|m| m.role == Role::Assistant && m.status != Status::Streaming)
        .map(|m| (m.id, m.content.as_str()))
        .collect();
    templates.render_ahead(finished).await;
}

/// The history as the chat page shows it: the path, each message with more than one version
/// showing which it is, Edit on the user's messages, Regenerate on the last reply (on the
/// newest page).
pub fn history_views(templates: &Templates, history: &ChatHistory) -> Vec<MessageView> {
    let messages = &history.messages;
    let has_user_message = !history.newest || messages.iter().any(|m| m.role == Role::User);
    let streaming = messages.iter().any(|m| m.status == Status::Streaming);
    let mut views: Vec<MessageView> = messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|message| {
            let mut view = MessageView::new(templates, message);
            view.versions = history.versions.get(&message.id).map(VersionsView::new);
            // Offered at once; while a reply is written it is hidden (CSS) and refused.
            view.can_edit = message.role == Role::User;
            view
        })
        .collect();
    let last_message_can_continue = messages.last().is_some_and(crate::store::can_continue);
    if history.newest
        && let Some(last) = views.last_mut().filter(|_| !streaming)
    {
        last.can_regenerate = has_user_message && last.role == Role::Assistant;
        last.can_continue = last.can_regenerate && last_message_can_continue;
        // The model is writing the chat's title: the page looks for it.
        last.title_pending = history.title_pending;
    }
    views
}

/// The context gauge beside the composer: how much of the model's context the next prompt
/// uses ("1,234 of 4,096 tokens"), and what the line above the messages left out says.
#[derive(Serialize)]
pub struct ContextView {
    pub chat_id: String,
    pub used_tokens: u32,
    pub context_tokens: Option<u32>,
    pub budget_tokens: Option<u32>,
    /// The gauge's words.
    pub text: String,
    /// What hovering it explains.
    pub explanation: String,
    /// Messages before this position no longer reach the model.
    pub first_sent_seq: Option<i64>,
    /// What the line above the messages left out says.
    pub boundary_text: String,
    /// The prompt is at or over its budget: messages are being left out.
    pub full: bool,
}

impl ContextView {
    pub fn new(chat_id: uuid::Uuid, used: &ContextUse) -> Self {
        let about = if used.exact { "" } else { "about " };
        let tokens = grouped(used.used_tokens.into());
        let mut text = match used.context_tokens {
            Some(context) => format!("{about}{tokens} of {} tokens", grouped(context.into())),
            None => format!("{about}{tokens} tokens"),
        };
        if used.left_out > 0 {
            text.push_str(&format!(" · {} left out", plural(used.left_out, "message")));
        }
        let explanation = match (used.context_tokens, used.budget_tokens) {
            (Some(context), Some(budget)) => format!(
                "What the next prompt uses of the model's context: the system prompt and as many of the latest messages as fit. {} of the {} tokens are kept free for the reply.",
                grouped((context - budget.min(context)).into()),
                grouped(context.into())
            ),
            _ => "What the next prompt uses: the system prompt and the messages. The model's context size is not known yet.".to_owned(),
        };
        let boundary_text = match used.left_out {
            0 => "Messages above this line no longer reach the model: only the latest are read for each reply.".to_owned(),
            n => format!(
                "{} above this line no longer {} the model: the chat is longer than its context holds.",
                plural(n, "message"),
                if n == 1 { "reaches" } else { "reach" }
            ),
        };
        Self {
            chat_id: chat_id.to_string(),
            used_tokens: used.used_tokens,
            context_tokens: used.context_tokens,
            budget_tokens: used.budget_tokens,
            text,
            explanation,
            first_sent_seq: used.first_sent_seq,
            boundary_text,
            full: used.left_out > 0,
        }
    }
}

/// A model, as the Models page lists it.
#[derive(Serialize)]
pub struct ModelView {
    pub id: String,
    /// "1.2 GB", when known.
    pub size: Option<String>,
    pub quantization: Option<String>,
    /// The context it was trained with, e.g. "8,192 tokens".
    pub context_length: Option<String>,
    /// The context each reply has here.
    pub n_ctx: Option<String>,
    pub template: Option<String>,
    pub source: Option<String>,
    /// "loaded", "loading", "not loaded", "downloading" or "download failed".
    pub state: &'static str,
    pub default: bool,
    /// Takes images.
    pub vision: bool,
    /// The download's percentage, or why it failed.
    pub download: Option<String>,
    /// The operator may remove it: downloaded into the hub cache, not the default (or a failed
    /// download, to forget).
    pub removable: bool,
}

impl From<&ModelInfo> for ModelView {
    fn from(model: &ModelInfo) -> Self {
        let tokens = |n: u32| format!("{} tokens", thousands(n));
        Self {
            id: model.id.clone(),
            size: model
                .size_bytes
                .map(|b| size(usize::try_from(b).unwrap_or(usize::MAX))),
            quantization: model.quantization.clone(),
            context_length: model.context_length.map(tokens),
            n_ctx: model.n_ctx.map(tokens),
            template: model.template.clone(),
            source: model.source.clone(),
            state: match (&model.download, model.loaded, model.loading) {
                (Some(d), ..) if d.error.is_some() => "download failed",
                (Some(_), ..) => "downloading",
                (None, true, _) => "loaded",
                (None, false, true) => "loading",
                (None, false, false) => "not loaded",
            },
            default: model.default,
            vision: model.vision,
            download: model
                .download
                .as_ref()
                .map(|d| match (&d.error, d.percent) {
                    (Some(error), _) => error.clone(),
                    (None, Some(percent)) => format!("{percent}%"),
                    (None, None) => "starting".to_owned(),
                }),
            removable: !model.default
                && (model.download.as_ref().is_some_and(|d| d.error.is_some())
                    || (model.download.is_none()
                        && model
                            .source
                            .as_deref()
                            .is_some_and(|s| s.starts_with("hub: ")))),
        }
    }
}

/// The model library as `fragments/model_table.html` shows it.
#[derive(Serialize)]
pub struct LibraryView {
    pub models: Vec<ModelView>,
    /// Why there is no list, when the engine cannot be asked now.
    pub unavailable: Option<String>,
    /// A download is running: the table follows it.
    pub downloading: bool,
    /// With the operator's actions.
    pub operator: bool,
}

impl LibraryView {
    pub fn new(models: Result<Vec<ModelInfo>, crate::error::AppError>, operator: bool) -> Self {
        match models {
            Ok(models) => Self {
                downloading: models
                    .iter()
                    .any(|m| m.download.as_ref().is_some_and(|d| d.error.is_none())),
                models: models.iter().map(ModelView::from).collect(),
                unavailable: None,
                operator,
            },
            Err(e) => Self {
                models: Vec::new(),
                unavailable: Some(e.to_string()),
                downloading: false,
                operator,
            },
        }
    }
}

/// 8192 → "8,192".
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A browser of the session, as the devices page lists it.
#[derive(Serialize)]
pub struct DeviceView {
    pub id: String,
    pub label: String,
    pub created: String,
    pub last_used: String,
    /// The browser showing the page.
    pub current: bool,
}

impl DeviceView {
    pub fn new(device: &device::Model, current: Option<uuid::Uuid>) -> Self {
        Self {
            id: device.id.to_string(),
            label: device.label.clone(),
            created: device.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            last_used: device.last_used_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            current: current == Some(device.id),
        }
    }
}

/// A link code just made, as the devices page shows it (once).
#[derive(Serialize)]
pub struct NewLinkView {
    pub code: String,
    pub path: String,
    pub expires: String,
    pub minutes: u64,
}

impl From<NewLink> for NewLinkView {
    fn from(link: NewLink) -> Self {
        Self {
            path: format!("/link/{}", link.code_in_url),
            code: link.code,
            expires: link.expires_at.format("%H:%M UTC").to_string(),
            minutes: LINK_LIFETIME.as_secs() / 60,
        }
    }
}

/// The chat's shared links, as its page lists them.
#[derive(Serialize)]
pub struct SharesView {
    pub chat_id: String,
    pub links: Vec<ShareLinkView>,
    /// Unfolded: the visitor just made or revoked a link.
    pub open: bool,
}

#[derive(Serialize)]
pub struct ShareLinkView {
    pub token: String,
    pub path: String,
    pub created: String,
}

impl SharesView {
    pub fn new(chat_id: uuid::Uuid, links: &[share::Model], open: bool) -> Self {
        Self {
            chat_id: chat_id.to_string(),
            links: links
                .iter()
                .map(|link| ShareLinkView {
                    token: link.token.clone(),
                    path: format!("/s/{}", link.token),
                    created: link.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                })
                .collect(),
            open,
        }
    }
}

/// A message of a shared chat, as its link shows it.
#[derive(Serialize)]
pub struct SharedMessageView {
    pub role: String,
    /// Safe HTML: escaped text for the user's messages, sanitised markdown for replies.
    pub html: String,
    pub reasoning_html: String,
    /// How the reply ended, when not complete.
    pub note: Option<String>,
    pub stats: Vec<String>,
    /// The files the message carried, named only.
    pub attachments: Vec<AttachmentView>,
    /// A reply's calls of tools.
    pub steps: Vec<super::steps::ToolStepView>,
}

/// The messages of a shared chat as its link shows them.
pub fn shared_views(messages: &[ExportMessage]) -> Vec<SharedMessageView> {
    messages
        .iter()
        .map(|m| {
            let assistant = m.role == "assistant";
            let note = match (m.status.as_str(), &m.error) {
                ("stopped", _) => Some("Stopped.".to_owned()),
                ("interrupted", _) => Some("This reply was interrupted.".to_owned()),
                ("streaming", _) => {
                    Some("Still being written when the chat was shared.".to_owned())
                }
                ("error", Some(error)) => Some(format!("This reply failed: {error}")),
                ("error", None) => Some("This reply failed.".to_owned()),
                _ => None,
            };
            SharedMessageView {
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| AttachmentView::new(&a.name, a.size_bytes, None))
                    .collect(),
                role: if assistant { "assistant" } else { "user" }.to_owned(),
                html: if assistant {
                    markdown_to_html(&m.content)
                } else {
                    escape_html(&m.content)
                },
                reasoning_html: markdown_to_html(m.reasoning.as_deref().unwrap_or_default()),
                note,
                stats: m.stats.as_ref().map(stats_phrases).unwrap_or_default(),
                steps: super::steps::ToolStepView::all(&m.tool_calls, None),
            }
        })
        .collect()
}

/// The gauge alone: the page's request for it after a reply, or out of band beside a form.
#[derive(Serialize)]
pub struct ContextFragment {
    pub g: ContextView,
    /// Swapped in out of band (`hx-swap-oob`), beside another fragment.
    pub oob: bool,
}

/// Marks where the line goes above the first message that still reaches the model; `true`
/// when every message shown is left out (the line goes after them).
pub fn mark_context_boundary(views: &mut [MessageView], first_sent_seq: Option<i64>) -> bool {
    let Some(first) = first_sent_seq else {
        return false;
    };
    match views.iter_mut().find(|v| v.seq >= first) {
        Some(view) => {
            view.context_boundary_before = true;
            false
        }
        None => !views.is_empty(),
    }
}

/// "1 message", "3 messages".
fn plural(n: u32, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{} {noun}s", grouped(n.into())),
    }
}

/// The settings form as the chat page shows it.
#[derive(Serialize)]
pub struct SettingsView {
    chat_id: String,
    system_prompt: String,
    temperature: String,
    max_tokens: String,
    model: String,
    default_system_prompt: String,
    default_temperature: f32,
    default_max_tokens: u32,
    max_reply_tokens: i32,
    /// The models to choose from; the choice is offered only when there is more than one.
    models: Vec<String>,
    /// The tools there are, each ticked when the chat's replies may call it.
    tools: Vec<ToolChoice>,
    /// The names of `tools`, comma-separated (the form sends it back).
    tools_listed: String,
    /// Just saved (the form says so).
    saved: bool,
    /// The chat has settings of its own (the summary says so).
    customised: bool,
}

impl SettingsView {
    pub fn new(state: &AppState, chat: &chat::Model, models: Vec<String>, saved: bool) -> Self {
        let config = &state.config;
        let settings = chat.settings();
        let tools: Vec<String> = state
            .tools
            .definitions()
            .into_iter()
            .map(|d| d.name)
            .collect();
        let choices = tools
            .iter()
            .map(|name| ToolChoice {
                chosen: settings.allows_tool(name),
                name: name.clone(),
            })
            .collect();
        Self {
            chat_id: chat.id.to_string(),
            customised: settings.is_customised(),
            system_prompt: settings.system_prompt.unwrap_or_default(),
            temperature: settings
                .temperature
                .map(|t| t.to_string())
                .unwrap_or_default(),
            max_tokens: settings
                .max_tokens
                .map(|n| n.to_string())
                .unwrap_or_default(),
            model: settings.model.unwrap_or_default(),
            default_system_prompt: config.system_prompt.clone(),
            default_temperature: config.lm_temperature,
            default_max_tokens: config.lm_max_tokens,
            max_reply_tokens: MAX_REPLY_TOKENS,
            tools_listed: tools.join(","),
            tools: choices,
            models,
            saved,
        }
    }
}

/// A tool in a chat's settings.
#[derive(Serialize)]
struct ToolChoice {
    name: String,
    chosen: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(-4096), "-4,096");
    }

    #[test]
    fn stats_read_as_short_phrases_and_leave_out_what_is_not_known() {
        let all = ReplyStats::new(
            Some("SmolLM2".into()),
            Some(1234),
            Some(128),
            Some(45),
            Some(1450),
        )
        .unwrap();
        assert_eq!(all.tokens_per_second, Some(88.3));
        assert_eq!(
            stats_phrases(&all),
            [
                "SmolLM2",
                "1,234 prompt + 128 reply tokens",
                "first token in 45 ms",
                "88.3 tokens/s"
            ]
        );
        let slow = ReplyStats::new(None, None, Some(3), Some(12_345), None).unwrap();
        assert_eq!(slow.tokens_per_second, None);
        assert_eq!(
            stats_phrases(&slow),
            ["3 reply tokens", "first token in 12.3 s"]
        );
        assert_eq!(ReplyStats::new(None, None, None, None, None), None);
    }

    #[test]
    fn the_gauge_reads_as_tokens_of_the_context_and_says_what_is_left_out() {
        let mut used = ContextUse {
            used_tokens: 1234,
            context_tokens: Some(4096),
            budget_tokens: Some(3584),
            first_sent_seq: None,
            left_out: 0,
            exact: true,
        };
        let view = ContextView::new(uuid::Uuid::nil(), &used);
        assert_eq!(view.text, "1,234 of 4,096 tokens");
        assert!(
            view.explanation
                .contains("512 of the 4,096 tokens are kept free")
        );
        assert!(!view.full);
        used.exact = false;
        used.left_out = 1;
        used.first_sent_seq = Some(7);
        let view = ContextView::new(uuid::Uuid::nil(), &used);
        assert_eq!(
            view.text,
            "about 1,234 of 4,096 tokens · 1 message left out"
        );
        assert!(
            view.boundary_text
                .starts_with("1 message above this line no longer reaches")
        );
        assert!(view.full);
        used.context_tokens = None;
        used.budget_tokens = None;
        used.left_out = 0;
        let view = ContextView::new(uuid::Uuid::nil(), &used);
        assert_eq!(view.text, "about 1,234 tokens");
        assert!(view.boundary_text.contains("only the latest are read"));
    }
}

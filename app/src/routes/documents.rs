//! The API's documents: what its requests carry and its responses return, with their OpenAPI
//! schemas. Each is built from a store model or a use-case result; nothing else.
use chrono::{DateTime, Utc};
use sea_orm::ActiveEnum;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    attachments::Upload,
    domain::{ChatSettings, ReplyStats},
    error::{AppError, AppResult},
    generation::ContextUse,
    lm::ModelInfo,
    store::{chat, device, folder, message, share},
};

/// A shared link: a read-only snapshot of a chat that anyone with the link can read.
#[derive(Serialize, ToSchema)]
pub struct ShareJson {
    /// The link's secret; revoke with `DELETE /api/v1/shares/{token}`.
    pub token: String,
    /// Where the snapshot is, on this server: `/s/{token}`.
    #[schema(example = "/s/3q2-7wVhx0mH5cX1AqzKk0ZyJg1N5PMbWxYc2EoKwUo")]
    pub url: String,
    /// The chat's title when shared.
    pub title: String,
    pub created_at: DateTime<Utc>,
}

impl From<share::Model> for ShareJson {
    fn from(s: share::Model) -> Self {
        ShareJson {
            url: format!("/s/{}", s.token),
            token: s.token,
            title: s.title,
            created_at: s.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Shares {
    pub shares: Vec<ShareJson>,
}

/// How much of the model's context the chat's next prompt uses, and what it leaves out.
#[derive(Serialize, ToSchema)]
pub struct ContextJson {
    /// Tokens the system prompt and the messages that fit take.
    pub used_tokens: u32,
    /// The model's context in tokens; `null` when the model server cannot say (yet).
    pub context_tokens: Option<u32>,
    /// What a prompt may use: the context less the room kept for the reply.
    pub budget_tokens: Option<u32>,
    /// Counted by the model's own tokenizer (embedded engine); else estimated on the safe side.
    pub exact: bool,
    /// Messages before this position (`seq`) no longer reach the model; `null` when all do.
    pub first_sent_seq: Option<i64>,
    /// How many messages are left out so that the rest fits.
    pub left_out: u32,
}

impl From<ContextUse> for ContextJson {
    fn from(c: ContextUse) -> Self {
        ContextJson {
            used_tokens: c.used_tokens,
            context_tokens: c.context_tokens,
            budget_tokens: c.budget_tokens,
            exact: c.exact,
            first_sent_seq: c.first_sent_seq,
            left_out: c.left_out,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChatJson {
    pub id: Uuid,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub settings: ChatSettings,
    /// Kept at the top of the sidebar.
    pub pinned: bool,
    /// The folder it is in; `null`: none.
    pub folder_id: Option<Uuid>,
    /// Not listed, never found by search, deleted after `TEMPORARY_CHAT_TTL` unused.
    pub temporary: bool,
}

impl From<chat::Model> for ChatJson {
    fn from(c: chat::Model) -> Self {
        let settings = c.settings();
        ChatJson {
            id: c.id,
            title: c.title,
            created_at: c.created_at,
            updated_at: c.updated_at,
            settings,
            pinned: c.pinned_at.is_some(),
            folder_id: c.folder_id,
            temporary: c.temporary,
        }
    }
}

/// A browser that uses this session's chats.
#[derive(Serialize, ToSchema)]
pub struct DeviceJson {
    pub id: Uuid,
    /// Its browser and system, from its `User-Agent` ("Firefox on Linux").
    pub label: String,
    pub created_at: DateTime<Utc>,
    /// Updated at most once an hour.
    pub last_used_at: DateTime<Utc>,
}

impl From<device::Model> for DeviceJson {
    fn from(d: device::Model) -> Self {
        DeviceJson {
            id: d.id,
            label: d.label,
            created_at: d.created_at,
            last_used_at: d.last_used_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Devices {
    pub devices: Vec<DeviceJson>,
}

/// A one-time code that links another browser (or API client) to this session.
#[derive(Serialize, ToSchema)]
pub struct DeviceLinkJson {
    /// As people type it: `ABCD-EFGH`.
    #[schema(example = "K7QF-9M2X")]
    pub code: String,
    /// The page that uses it, on this server: `/link/{code}`.
    #[schema(example = "/link/K7QF9M2X")]
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A folder of chats, in the sidebar.
#[derive(Serialize, ToSchema)]
pub struct FolderJson {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<folder::Model> for FolderJson {
    fn from(f: folder::Model) -> Self {
        FolderJson {
            id: f.id,
            name: f.name,
            created_at: f.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Folders {
    pub folders: Vec<FolderJson>,
}

#[derive(Deserialize, ToSchema)]
pub struct FolderBody {
    #[schema(min_length = 1, max_length = 60)]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Pin {
    pub pinned: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct MoveToFolder {
    /// A folder of this session; `null`: out of any folder.
    pub folder_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageJson {
    pub id: Uuid,
    pub chat_id: Uuid,
    /// Position in the chat, from 1.
    pub seq: i64,
    /// `system`, `user` or `assistant`.
    #[schema(example = "assistant")]
    pub role: String,
    /// `complete`, `streaming`, `stopped`, `interrupted` or `error`.
    #[schema(example = "complete")]
    pub status: String,
    pub content: String,
    /// A reply's reasoning (what a thinking model wrote before its answer), apart from it.
    pub reasoning: Option<String>,
    /// Why a reply failed, for `status: error` (and `interrupted`).
    pub error: Option<String>,
    /// Not on the chat's current path: another version of it (or of a message before it) is
    /// the one shown and sent to the model. Lists hold only the path; an export holds all.
    pub superseded: bool,
    /// The message this one follows (a reply its user message, a user message the reply before
    /// it); `null` for the chat's first. Messages with the same parent are versions of one
    /// another.
    pub parent_id: Option<Uuid>,
    /// In message lists: the ids of this message's versions, oldest first, this one included;
    /// absent when it has no other. `POST /api/v1/messages/{id}/select` chooses one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<Uuid>>,
    /// A reply's stats: model, tokens, time to first token, tokens a second. `null` for
    /// other messages, and for replies still being written or with nothing measured.
    pub stats: Option<ReplyStats>,
    pub created_at: DateTime<Utc>,
    /// The files sent with a user message.
    pub attachments: Vec<AttachmentJson>,
    /// A reply's calls of tools, in order: each with its arguments and (once it ended) its
    /// result, whether that is an error, and how long it took. `at` is where in `content` the
    /// call was made (bytes).
    pub tool_calls: Vec<crate::domain::ToolStep>,
}

impl From<message::Model> for MessageJson {
    fn from(m: message::Model) -> Self {
        let attachments = m
            .attachment_refs()
            .into_iter()
            .map(|a| AttachmentJson {
                url: format!("/api/v1/chats/{}/attachments/{}", m.chat_id, a.id),
                id: a.id,
                name: a.name,
                media_type: a.media_type,
                size_bytes: a.size_bytes,
            })
            .collect();
        MessageJson {
            attachments,
            tool_calls: m.tool_steps(),
            stats: m.stats(),
            id: m.id,
            chat_id: m.chat_id,
            seq: m.seq,
            role: m.role.to_value(),
            status: m.status.to_value(),
            content: m.content,
            reasoning: m.reasoning,
            error: m.error,
            superseded: m.superseded,
            parent_id: m.parent_id,
            versions: None,
            created_at: m.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChatPage {
    pub chats: Vec<ChatJson>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageJson>,
    /// Pass as `before` for the earlier messages; absent when there are none.
    pub earlier: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatWithMessages {
    pub chat: ChatJson,
    /// The newest messages, oldest first (see `GET /api/v1/chats/{id}/messages` for more).
    pub messages: Vec<MessageJson>,
    pub earlier: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewChat {
    /// A title; without one the first message names the chat.
    #[schema(min_length = 1, max_length = 120)]
    pub title: Option<String>,
    /// A temporary chat: not listed (`GET /api/v1/chats`), never found by search, and deleted
    /// with everything in it once `TEMPORARY_CHAT_TTL` (default 24 h) has passed since its last
    /// use.
    #[serde(default)]
    pub temporary: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct Rename {
    #[schema(min_length = 1, max_length = 120)]
    pub title: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewMessage {
    /// What the user wrote; may be empty (`""`) when files are attached.
    pub content: String,
    /// Files sent with the message (at most `MAX_ATTACHMENTS`, each at most
    /// `MAX_ATTACHMENT_BYTES`): text, PDF, or images for a model that can see.
    #[serde(default)]
    pub attachments: Vec<NewAttachment>,
}

/// A file to attach.
#[derive(Deserialize, ToSchema)]
pub struct NewAttachment {
    #[schema(example = "notes.md")]
    pub name: String,
    /// The file's bytes, base64 (standard alphabet, padded).
    pub data: String,
}

impl NewMessage {
    /// The attachments as uploads, or which one is not base64.
    pub fn uploads(&mut self) -> AppResult<Vec<Upload>> {
        use base64::Engine as _;
        std::mem::take(&mut self.attachments)
            .into_iter()
            .map(|a| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(a.data.as_bytes())
                    .map_err(|_| {
                        AppError::Invalid(format!(
                            "The data of “{}” is not base64 (standard alphabet, padded).",
                            a.name
                        ))
                    })?;
                Ok(Upload {
                    name: a.name,
                    bytes: bytes.into(),
                })
            })
            .collect()
    }
}

/// A file sent with a message.
#[derive(Serialize, ToSchema)]
pub struct AttachmentJson {
    pub id: Uuid,
    pub name: String,
    /// Decided by the app from the file's bytes.
    #[schema(example = "application/pdf")]
    pub media_type: String,
    pub size_bytes: u64,
    /// Where to download it (as sent; never rendered).
    #[schema(example = "/api/v1/chats/0193…/attachments/0193…")]
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct Sent {
    pub user_message: MessageJson,
    pub assistant_message_id: Uuid,
    /// Where the reply streams (server-sent events).
    #[schema(example = "/api/v1/messages/0193…/stream")]
    pub stream_url: String,
}

/// A reply going on from its text (Continue).
#[derive(Serialize, ToSchema)]
pub struct Continued {
    pub assistant_message_id: Uuid,
    /// Where the reply streams (server-sent events), from its start.
    #[schema(example = "/api/v1/messages/0193…/stream")]
    pub stream_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    /// Send as `Authorization: Bearer <token>`. It stands for this session, like its cookie.
    pub token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// Chats whose title contains the text.
    pub chats: Vec<ChatJson>,
    /// Messages that contain it, newest first.
    pub messages: Vec<SearchMessage>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchMessage {
    pub chat_title: String,
    pub message: MessageJson,
    /// The text around the first match, and the match as written.
    pub snippet: Snippet,
}

#[derive(Serialize, ToSchema)]
pub struct Snippet {
    pub before: String,
    pub matched: String,
    pub after: String,
}

#[derive(Serialize, ToSchema)]
pub struct Models {
    /// What the engine serves; a chat may pick any of them (its settings' `model`).
    pub models: Vec<ModelInfo>,
}

/// One server-sent event of a reply stream. `delta`: `data` is `{"text": …}` and `id` the byte
/// offset after it (send it back as `Last-Event-ID` to resume); `reasoning`: `{"text": …}`, the
/// model's thinking, before the answer (ids are then `<answer offset>:<reasoning offset>`);
/// `tool_call`: `{"id", "name", "arguments", "approval"}`, a call of a tool began (`approval`:
/// `"pending"` when it waits for the person, `POST /messages/{id}/tool_calls/{call_id}`); `tool_result`: `{"id",
/// "name", "result", "is_error", "duration_ms"}`, it ended (once a reply has calls, ids are
/// `<answer>:<reasoning>:<step events>`, each call and each result one step event);
/// `status`: `{"text": …}` (waiting for the model, or empty); `error`: `{"error": …}`; `done`:
/// the reply as stored, last.
#[derive(Serialize, ToSchema)]
pub struct StreamEvent {
    #[schema(example = "delta")]
    pub event: String,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

impl From<crate::chat::SearchResults> for SearchResults {
    fn from(results: crate::chat::SearchResults) -> Self {
        SearchResults {
            chats: results.chats.into_iter().map(ChatJson::from).collect(),
            messages: results
                .messages
                .into_iter()
                .map(|found| SearchMessage {
                    chat_title: found.hit.chat_title,
                    snippet: Snippet {
                        before: found.before,
                        matched: found.matched,
                        after: found.after,
                    },
                    message: found.hit.message.into(),
                })
                .collect(),
        }
    }
}

impl From<crate::chat::MessagePage> for MessagePage {
    fn from(page: crate::chat::MessagePage) -> Self {
        let mut versions = page.versions;
        MessagePage {
            messages: page
                .messages
                .into_iter()
                .map(|m| {
                    let of_it = versions.remove(&m.id).map(|v| v.ids);
                    MessageJson {
                        versions: of_it,
                        ..MessageJson::from(m)
                    }
                })
                .collect(),
            earlier: page.earlier,
        }
    }
}

/// The person signed in (accounts on).
#[derive(Serialize, ToSchema)]
pub struct AccountJson {
    pub id: uuid::Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
    /// Replies asked for today (UTC).
    pub replies_today: i64,
    /// Tokens the model wrote for them today (UTC).
    pub tokens_today: i64,
    /// `USER_DAILY_REPLIES`; `null`: no limit.
    pub daily_replies: Option<u64>,
    /// `USER_DAILY_TOKENS`; `null`: no limit.
    pub daily_tokens: Option<u64>,
}

/// A user, with what they used today and this month (UTC).
#[derive(Serialize, ToSchema)]
pub struct UserJson {
    pub id: uuid::Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub replies_today: i64,
    pub tokens_today: i64,
    pub replies_this_month: i64,
    pub tokens_this_month: i64,
}

impl UserJson {
    pub fn new(settings: &crate::accounts::AccountSettings, used: crate::store::UserUsage) -> Self {
        Self {
            id: used.user.id,
            admin: settings.is_admin(used.user.email.as_deref(), used.user.in_admin_group),
            disabled: used.user.disabled_at.is_some(),
            last_seen: used.last_seen,
            replies_today: used.replies_today,
            tokens_today: used.tokens_today,
            replies_this_month: used.replies_this_month,
            tokens_this_month: used.tokens_this_month,
            email: used.user.email,
            name: used.user.name,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Users {
    pub users: Vec<UserJson>,
}

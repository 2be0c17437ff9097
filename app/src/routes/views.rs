//! What the templates are given: use-case results shaped for the pages. Every page's and
//! fragment's context types are here, so the page modules share them without importing each
//! other.
use serde::Serialize;

use crate::{
    AppState,
    chat::{ChatHistory, Sidebar},
    domain::MAX_REPLY_TOKENS,
    render::{Templates, escape_html},
    store::{Role, Status, chat, message},
};

/// What every page shows around its content: the sidebar and the visitor's name.
#[derive(Serialize)]
pub struct Frame {
    pub chats: Vec<chat::Model>,
    /// There are more chats than the sidebar shows.
    pub more_chats: bool,
    pub display_name: Option<String>,
}

impl From<Sidebar> for Frame {
    fn from(sidebar: Sidebar) -> Self {
        Self {
            chats: sidebar.chats,
            more_chats: sidebar.more_chats,
            display_name: sidebar.display_name,
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
    /// Offer Edit (the chat's latest user message).
    pub can_edit: bool,
    /// An earlier version (edited away, or a reply to one).
    pub superseded: bool,
    /// For an edited message: its earlier versions, each with the replies it had, oldest first.
    pub earlier_versions: Vec<Vec<MessageView>>,
    /// The model is still writing the chat's title: the page asks for it until it is there.
    pub title_pending: bool,
}

impl MessageView {
    pub fn new(templates: &Templates, message: &message::Model) -> Self {
        let html = match (message.role, message.status) {
            (Role::Assistant, Status::Streaming) => escape_html(&message.content),
            (Role::Assistant, _) => templates.finished_reply_html(message.id, &message.content),
            _ => escape_html(&message.content),
        };
        Self {
            id: message.id.to_string(),
            chat_id: message.chat_id.to_string(),
            role: message.role,
            status: message.status,
            html,
            reasoning_html: escape_html(message.reasoning.as_deref().unwrap_or_default()),
            content: if message.role == Role::User {
                message.content.clone()
            } else {
                String::new()
            },
            error: message.error.clone(),
            can_regenerate: false,
            can_edit: false,
            superseded: message.superseded,
            earlier_versions: Vec::new(),
            title_pending: false,
        }
    }
}

/// The history as the chat page shows it: earlier versions of an edited message folded into
/// it, Regenerate on the last reply and Edit on the last user message (on the newest page).
pub fn history_views(templates: &Templates, history: &ChatHistory) -> Vec<MessageView> {
    let messages = &history.messages;
    let has_user_message = !history.newest || messages.iter().any(|m| m.role == Role::User);
    let streaming = messages.iter().any(|m| m.status == Status::Streaming);
    let mut views: Vec<MessageView> = Vec::with_capacity(messages.len());
    let mut versions: Vec<Vec<MessageView>> = Vec::new();
    for message in messages.iter().filter(|m| m.role != Role::System) {
        let mut view = MessageView::new(templates, message);
        if message.superseded {
            match versions.last_mut() {
                Some(version) if message.role != Role::User => version.push(view),
                _ => versions.push(vec![view]),
            }
            continue;
        }
        view.earlier_versions = std::mem::take(&mut versions);
        views.push(view);
    }
    // Earlier versions with no newer one on this page stay visible, as earlier versions.
    views.extend(versions.into_iter().flatten());
    if history.newest {
        // Edit is offered at once; while the reply is written it is hidden (CSS) and refused.
        if let Some(user) = views
            .iter_mut()
            .rev()
            .find(|v| v.role == Role::User && !v.superseded)
        {
            user.can_edit = true;
        }
        if let Some(last) = views.last_mut().filter(|_| !streaming) {
            last.can_regenerate = has_user_message && last.role == Role::Assistant;
            // The model is writing the chat's title: the page looks for it.
            last.title_pending = history.title_pending;
        }
    }
    views
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
    /// Just saved (the form says so).
    saved: bool,
    /// The chat has settings of its own (the summary says so).
    customised: bool,
}

impl SettingsView {
    pub fn new(state: &AppState, chat: &chat::Model, models: Vec<String>, saved: bool) -> Self {
        let config = &state.config;
        let settings = chat.settings();
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
            models,
            saved,
        }
    }
}

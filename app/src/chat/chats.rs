//! Chats: find, list, open with their history, create, rename, delete, and the sidebar.
use std::{collections::HashMap, net::IpAddr};

use uuid::Uuid;

use crate::{
    AppState,
    attachments::Upload,
    domain::{MessageText, Title},
    error::{AppError, AppResult},
    generation::ContextUse,
    limits::Action,
    session::Session,
    store::{PageOfChats, Versions, chat, folder, message},
};

/// Chats in the sidebar; all of them are on `/chats`, a page at a time.
pub const CHATS_IN_SIDEBAR: u64 = 50;
/// Messages the chat page shows at once; older ones are a link away.
pub const MESSAGES_PER_PAGE: u64 = 100;

/// This session's chat, or "not found" (also for another session's: existence is not leaked).
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn find(state: &AppState, session: &Session, chat_id: Uuid) -> AppResult<chat::Model> {
    state
        .store
        .find_chat(&session.id, chat_id)
        .await?
        .ok_or(AppError::NotFound("chat"))
}

/// How much of the model's context the chat's next prompt uses, and which of its messages no
/// longer reach the model.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn context(state: &AppState, session: &Session, chat_id: Uuid) -> AppResult<ContextUse> {
    let chat = find(state, session, chat_id).await?;
    Ok(state.generations.context_use(&session.id, &chat).await?)
}

/// A page of the session's chats, most recently active first, continuing after the chat
/// `after` (the previous page's last).
#[tracing::instrument(skip_all)]
pub async fn list(
    state: &AppState,
    session: &Session,
    after: Option<Uuid>,
    limit: u64,
) -> AppResult<PageOfChats> {
    state
        .store
        .page_of_chats(&session.id, after, limit)
        .await?
        .ok_or(AppError::NotFound("chat"))
}

/// The session's version: every write to its chats, messages or name raises it, whichever
/// replica writes. Read it before what a page shows, to stamp that page (`page_cache`).
pub async fn session_version(state: &AppState, session: &Session) -> AppResult<i64> {
    Ok(state.store.session_version(&session.id).await?)
}

/// What every page shows around its content: the pinned chats, the folders with their chats,
/// the newest of the other chats, and the visitor's name.
pub struct Sidebar {
    /// Pinned chats, the most recently pinned first (whatever folder they are in).
    pub pinned: Vec<chat::Model>,
    /// Every folder, by name, with its chats that are not pinned, most recently active first.
    pub folders: Vec<FolderOfChats>,
    /// The newest of the other chats.
    pub chats: Vec<chat::Model>,
    /// There are more chats than the sidebar shows.
    pub more_chats: bool,
    pub display_name: Option<String>,
    /// The person signed in (accounts on).
    pub account: Option<std::sync::Arc<crate::session::Account>>,
    /// They can sign out here (OpenID Connect; a proxy's sign-in is the proxy's).
    pub signs_out: bool,
}

pub struct FolderOfChats {
    pub folder: folder::Model,
    pub chats: Vec<chat::Model>,
}

pub async fn sidebar(state: &AppState, session: &Session) -> AppResult<Sidebar> {
    let (listed, folders, display_name) = tokio::try_join!(
        state.store.sidebar_chats(&session.id, CHATS_IN_SIDEBAR + 1),
        state.store.list_folders(&session.id),
        state.store.display_name(&session.id),
    )?;
    let mut chats = listed.recent;
    let more_chats = chats.len() as u64 > CHATS_IN_SIDEBAR;
    chats.truncate(CHATS_IN_SIDEBAR as usize);
    let mut folders: Vec<FolderOfChats> = folders
        .into_iter()
        .map(|folder| FolderOfChats {
            folder,
            chats: Vec::new(),
        })
        .collect();
    let mut pinned = Vec::new();
    for chat in listed.organized {
        if chat.pinned_at.is_some() {
            pinned.push(chat);
            continue;
        }
        match folders
            .iter_mut()
            .find(|f| Some(f.folder.id) == chat.folder_id)
        {
            Some(folder) => folder.chats.push(chat),
            // Its folder was deleted while it was being moved there: it counts as unfiled.
            None => chats.push(chat),
        }
    }
    pinned.sort_by_key(|c| std::cmp::Reverse(c.pinned_at));
    Ok(Sidebar {
        pinned,
        folders,
        chats,
        more_chats,
        display_name,
        account: session.account.clone(),
        signs_out: state.accounts.settings.mode == crate::accounts::AuthMode::Oidc,
    })
}

/// Some of a chat's messages (its current path), oldest first, and where the earlier ones end.
pub struct MessagePage {
    pub messages: Vec<message::Model>,
    /// The `before` of the previous page (the oldest message's position), when there is one.
    pub earlier: Option<i64>,
    /// The versions of the messages that have more than one.
    pub versions: HashMap<Uuid, Versions>,
}

/// The newest `limit` messages before position `before` (or the newest of all).
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn messages(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> AppResult<MessagePage> {
    if before.is_some_and(|b| b < 1) {
        return Err(AppError::Invalid("before must be at least 1.".into()));
    }
    let mut messages = state
        .store
        .list_messages(&session.id, chat_id, before, limit + 1)
        .await?;
    let versions = state
        .store
        .message_versions(&session.id, chat_id, &messages)
        .await?;
    // One more than asked for: its presence says there is earlier history.
    let earlier = if messages.len() as u64 > limit {
        messages.remove(0);
        messages.first().map(|m| m.seq)
    } else {
        None
    };
    Ok(MessagePage {
        messages,
        earlier,
        versions,
    })
}

/// A chat opened to read: the chat and a page of its history.
pub struct OpenedChat {
    pub chat: chat::Model,
    pub history: ChatHistory,
}

pub struct ChatHistory {
    pub messages: Vec<message::Model>,
    pub earlier: Option<i64>,
    /// The versions of the messages that have more than one.
    pub versions: HashMap<Uuid, Versions>,
    /// The newest page (the one that offers Edit and Regenerate), rather than an earlier one.
    pub newest: bool,
    /// The model is writing the chat's title now.
    pub title_pending: bool,
}

/// Opens a chat at its newest messages, or at the page before position `before`; a `before`
/// past the newest message (a search result's link to a recent message) is the newest page.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn open(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> AppResult<OpenedChat> {
    let chat = find(state, session, chat_id).await?;
    let before = match before {
        Some(before)
            if state
                .store
                .has_messages_from(&session.id, chat_id, before)
                .await? =>
        {
            Some(before)
        }
        _ => None,
    };
    let page = messages(state, session, chat_id, before, limit).await?;
    Ok(OpenedChat {
        chat,
        history: ChatHistory {
            messages: page.messages,
            earlier: page.earlier,
            versions: page.versions,
            newest: before.is_none(),
            title_pending: state.generations.title_pending(chat_id),
        },
    })
}

/// How to start a chat: with a first message (which the model answers at once) or a title.
#[derive(Default)]
pub struct NewChat {
    pub first_message: Option<MessageText>,
    /// Files sent with the first message.
    pub files: Vec<Upload>,
    pub title: Option<Title>,
    /// A temporary chat (see `chat::Model::temporary`).
    pub temporary: bool,
}

/// Starts a chat with the configured greeting, and the first message's reply if there is one.
/// Counts against the chat-creation limit (and the send limit, with a message).
#[tracing::instrument(skip_all)]
pub async fn create(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    new_chat: NewChat,
) -> AppResult<chat::Model> {
    state
        .rate_limits
        .check(Action::CreateChat, &session.id, address)
        .await?;
    let mut files = Vec::new();
    if let Some(text) = &new_chat.first_message {
        state
            .rate_limits
            .check(Action::Send, &session.id, address)
            .await?;
        files = super::messages::read_attachments(state, None, new_chat.files).await?;
        let message = super::messages::new_user_message(text, &files);
        super::messages::refuse_unless_fits(state, None, &message, !files.is_empty()).await?;
    }
    let greeting = Some(state.config.greeting.as_str());
    let first_message = new_chat
        .first_message
        .as_ref()
        .map(|text| (text.as_str(), files.as_slice()));
    let taken = match first_message {
        Some(_) => super::account::take_reply(state, session).await?,
        None => None,
    };
    let created = state
        .store
        .create_chat(&session.id, greeting, first_message, new_chat.temporary)
        .await;
    let created = super::account::kept(state, session, taken, created).await?;
    if let Some(reply) = &created.reply {
        super::messages::start_reply(state, session, reply, &created.chat).await?;
    }
    match new_chat.title {
        Some(title) => rename(state, session, created.chat.id, &title).await,
        None => Ok(created.chat),
    }
}

/// Deletes the temporary chats unused for `TEMPORARY_CHAT_TTL`; how many.
pub async fn delete_unused_temporary_chats(state: &AppState) -> AppResult<u64> {
    let ttl = chrono::Duration::from_std(state.config.temporary_chat_ttl)
        .unwrap_or(chrono::Duration::MAX);
    let before = chrono::Utc::now()
        .checked_sub_signed(ttl)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let deleted = state.store.delete_unused_temporary_chats(before).await?;
    if deleted > 0 {
        tracing::info!(deleted, "temporary chats deleted after TEMPORARY_CHAT_TTL");
    }
    Ok(deleted)
}

#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn rename(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    title: &Title,
) -> AppResult<chat::Model> {
    state
        .store
        .rename_chat(&session.id, chat_id, title.as_str())
        .await?
        .ok_or(AppError::NotFound("chat"))
}

/// Deletes a chat and all its messages.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn delete(state: &AppState, session: &Session, chat_id: Uuid) -> AppResult<()> {
    match state.store.delete_chat(&session.id, chat_id).await? {
        true => Ok(()),
        false => Err(AppError::NotFound("chat")),
    }
}

/// Whether the model is still writing the chat's title.
pub enum TitleStatus {
    Pending,
    /// Boxed: a chat's row is large beside nothing.
    Ready(Box<chat::Model>),
}

pub async fn title_status(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
) -> AppResult<TitleStatus> {
    let chat = find(state, session, chat_id).await?;
    Ok(match state.generations.title_pending(chat_id) {
        true => TitleStatus::Pending,
        false => TitleStatus::Ready(Box::new(chat)),
    })
}

//! Shared links: a read-only snapshot of a chat as it is when shared, at an unguessable URL
//! (`/s/{token}`) that anyone may open without a session. The snapshot holds the title and the
//! current messages (not earlier versions of edited ones, not the settings): later messages,
//! renames and edits never show through a link. Revoking deletes it; so does deleting the chat.
use std::net::IpAddr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::transfer::{ExportMessage, export_document};
use crate::{
    AppState,
    error::{AppError, AppResult},
    limits::Action,
    session::Session,
    store::share,
};

/// Random bytes in a link's token (base64url: 43 characters). 256 bits cannot be guessed.
const TOKEN_BYTES: usize = 32;
const TOKEN_CHARS: usize = 43;

/// A chat as its link shows it.
pub struct SharedChat {
    pub title: String,
    pub shared_at: DateTime<Utc>,
    pub messages: Vec<ExportMessage>,
}

/// What a link's row keeps: the messages as the JSON export has them.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    messages: Vec<ExportMessage>,
}

/// A new link to a snapshot of the chat as it is now.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn share(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    chat_id: Uuid,
) -> AppResult<share::Model> {
    state
        .rate_limits
        .check(Action::Share, &session.id, address)
        .await?;
    let chat = super::find(state, session, chat_id).await?;
    let messages = state.store.list_all_messages(&session.id, chat_id).await?;
    // The snapshot names the chat's files but does not carry them: a link shares the text.
    let document = export_document(&chat, &messages, &Default::default());
    let snapshot = Snapshot {
        messages: document
            .messages
            .into_iter()
            .filter(|m| !m.superseded && m.role != "system")
            // A link shares the text as it reads, not how the chat is stored.
            .map(|m| ExportMessage {
                id: None,
                parent_id: None,
                ..m
            })
            .collect(),
    };
    let snapshot = serde_json::to_string(&snapshot)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("writing a snapshot: {e}")))?;
    Ok(state
        .store
        .create_share(&session.id, chat_id, new_token(), &chat.title, snapshot)
        .await?)
}

/// The chat's links, newest first.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn shares(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
) -> AppResult<Vec<share::Model>> {
    super::find(state, session, chat_id).await?;
    Ok(state.store.list_shares(&session.id, chat_id).await?)
}

/// Revokes one of the session's links: from now on it is "not found".
#[tracing::instrument(skip_all)]
pub async fn revoke_share(state: &AppState, session: &Session, token: &str) -> AppResult<()> {
    if !is_token(token) || !state.store.revoke_share(&session.id, token).await? {
        return Err(AppError::NotFound("link"));
    }
    Ok(())
}

/// What a link shows, for anyone holding it; "not found" for a revoked or unknown one.
#[tracing::instrument(skip_all)]
pub async fn shared(state: &AppState, token: &str) -> AppResult<SharedChat> {
    if !is_token(token) {
        return Err(AppError::NotFound("link"));
    }
    let share = state
        .store
        .find_share(token)
        .await?
        .ok_or(AppError::NotFound("link"))?;
    let snapshot: Snapshot = serde_json::from_str(&share.snapshot)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading a snapshot: {e}")))?;
    Ok(SharedChat {
        title: share.title,
        shared_at: share.created_at,
        messages: snapshot.messages,
    })
}

/// Whether `token` is a link that still works (revoked or unknown: "not found"), for anyone;
/// counted against the address's allowance of views first.
#[tracing::instrument(skip_all)]
pub async fn check_shared(state: &AppState, address: IpAddr, token: &str) -> AppResult<()> {
    state.rate_limits.check_share_view(address).await?;
    if !is_token(token) || !state.store.share_exists(token).await? {
        return Err(AppError::NotFound("link"));
    }
    Ok(())
}

fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` could be one of ours (anything else is not looked up).
fn is_token(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(is_token(&a) && is_token(&b), "{a} {b}");
        assert!(!is_token(&a[1..]) && !is_token(&format!("{}=", &a[1..])));
        assert!(!is_token("../../etc/passwd-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }
}

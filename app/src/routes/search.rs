//! Search over this session's chats: titles and message text, each result linking to the
//! message in its chat.
use axum::{
    extract::{Query, State},
    response::Html,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    error::{AppError, AppResult},
    session::Session,
    store::{SearchHit, chat},
};

use super::{chats::MESSAGES_PER_PAGE, reject_nul, render};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most chats and messages one search shows.
const CHATS_SHOWN: u64 = 20;
const MESSAGES_SHOWN: u64 = 50;
/// Characters of context shown on each side of a match.
const CONTEXT_CHARS: usize = 80;

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
}

/// A message that matched, with the text around the match.
#[derive(Serialize)]
pub struct MessageHit {
    pub hit_chat_id: String,
    pub chat_title: String,
    pub message_id: String,
    pub role: crate::store::Role,
    /// The `before` of the chat page that holds the message, whatever its age (the chat page
    /// shows the newest page when it is past the end).
    pub page_before: i64,
    pub before: String,
    pub matched: String,
    pub after: String,
    #[serde(skip)]
    pub hit: SearchHit,
}

pub struct Results {
    pub chats: Vec<chat::Model>,
    pub messages: Vec<MessageHit>,
}

/// The query as searched: trimmed; blank is no search; too long or unstorable is an error.
pub fn clean_query(raw: &str) -> AppResult<Option<String>> {
    reject_nul(raw)?;
    let query = raw.trim();
    if query.is_empty() {
        return Ok(None);
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(AppError::Invalid(format!(
            "Please search for at most {MAX_QUERY_CHARS} characters."
        )));
    }
    Ok(Some(query.to_owned()))
}

pub async fn search(state: &AppState, session: &Session, query: &str) -> AppResult<Results> {
    let (chats, hits) = tokio::try_join!(
        state.store.search_chats(&session.id, query, CHATS_SHOWN),
        state
            .store
            .search_messages(&session.id, query, MESSAGES_SHOWN),
    )?;
    let messages = hits
        .into_iter()
        .map(|hit| {
            let (before, matched, after) = snippet(&hit.message.content, query);
            let m = &hit.message;
            MessageHit {
                hit_chat_id: m.chat_id.to_string(),
                chat_title: hit.chat_title.clone(),
                message_id: m.id.to_string(),
                role: m.role,
                page_before: m.seq + MESSAGES_PER_PAGE as i64 / 2,
                before,
                matched,
                after,
                hit,
            }
        })
        .collect();
    Ok(Results { chats, messages })
}

/// The first match of `query` in `text` (ignoring case) with some words around it, as
/// (before, match, after). A message that matched only by case rules this cannot see (LIKE on
/// PostgreSQL knows more letters) starts at its beginning.
pub fn snippet(text: &str, query: &str) -> (String, String, String) {
    let lower_query: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
    let found = text.char_indices().find_map(|(start, _)| {
        let mut wanted = lower_query.iter().peekable();
        let mut end = start;
        for c in text[start..].chars() {
            if wanted.peek().is_none() {
                break;
            }
            for lower in c.to_lowercase() {
                if wanted.next() != Some(&lower) {
                    return None;
                }
            }
            end += c.len_utf8();
        }
        wanted.peek().is_none().then_some((start, end))
    });
    let Some((start, end)) = found else {
        let head: String = text.chars().take(CONTEXT_CHARS * 2).collect();
        let more = if head.len() < text.len() { "…" } else { "" };
        return (String::new(), String::new(), format!("{head}{more}"));
    };
    let before_chars: Vec<char> = text[..start].chars().collect();
    let before: String = before_chars[before_chars.len().saturating_sub(CONTEXT_CHARS)..]
        .iter()
        .collect();
    let after: String = text[end..].chars().take(CONTEXT_CHARS).collect();
    let ellipsis_before = if before.len() < start { "…" } else { "" };
    let ellipsis_after = if after.len() < text.len() - end {
        "…"
    } else {
        ""
    };
    (
        format!("{ellipsis_before}{}", before.trim_start()),
        text[start..end].to_owned(),
        format!("{}{ellipsis_after}", after.trim_end()),
    )
}

#[derive(Serialize)]
struct SearchPage {
    frame: super::chats::Frame,
    q: String,
    searched: bool,
    chats: Vec<chat::Model>,
    messages: Vec<MessageHit>,
    max_query_chars: usize,
}

/// `GET /search?q=`: the form, and what matched.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<SearchQuery>,
) -> AppResult<Html<String>> {
    let cleaned = clean_query(&query.q)?;
    let frame = super::chats::frame(&state, &session).await?;
    let results = match &cleaned {
        Some(q) => search(&state, &session, q).await?,
        None => Results {
            chats: Vec::new(),
            messages: Vec::new(),
        },
    };
    render(
        &state,
        "search.html",
        SearchPage {
            frame,
            q: query.q.trim().to_owned(),
            searched: cleaned.is_some(),
            chats: results.chats,
            messages: results.messages,
            max_query_chars: MAX_QUERY_CHARS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn snippets_find_the_match_ignoring_case_and_keep_it_as_written() {
        assert_eq!(
            snippet("Hello Wörld, again", "wÖrld"),
            ("Hello ".into(), "Wörld".into(), ", again".into())
        );
        let long = format!("{}needle{}", "a".repeat(300), "b".repeat(300));
        let (before, matched, after) = snippet(&long, "NEEDLE");
        assert_eq!(matched, "needle");
        assert!(before.starts_with('…') && before.chars().count() == 81);
        assert!(after.ends_with('…') && after.chars().count() == 81);
        // No visible match (a case rule only the database knows): the start of the text.
        let (before, matched, after) = snippet("short text", "zzz");
        assert_eq!(
            (before.as_str(), matched.as_str(), after.as_str()),
            ("", "", "short text")
        );
    }
}

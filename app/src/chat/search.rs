//! Search over the session's chats: titles and message text, each message hit with the words
//! around the match and the page of its chat that holds it.
use crate::{
    AppState,
    domain::SearchQuery,
    error::AppResult,
    session::Session,
    store::{SearchHit, chat},
};

/// Most chats and messages one search returns.
const CHATS_FOUND: u64 = 20;
const MESSAGES_FOUND: u64 = 50;
/// Characters of context kept on each side of a match.
const CONTEXT_CHARS: usize = 80;

/// A message that matched, with the text around the match.
pub struct MessageHit {
    pub hit: SearchHit,
    /// The `before` of the chat page that holds the message, whatever its age (the chat page
    /// shows the newest page when it is past the end).
    pub page_before: i64,
    pub before: String,
    pub matched: String,
    pub after: String,
}

pub struct SearchResults {
    /// Chats whose title contains the text.
    pub chats: Vec<chat::Model>,
    /// Messages that contain it, newest first.
    pub messages: Vec<MessageHit>,
}

#[tracing::instrument(skip_all)]
pub async fn search(
    state: &AppState,
    session: &Session,
    query: &SearchQuery,
) -> AppResult<SearchResults> {
    let query = query.as_str();
    let (chats, hits) = tokio::try_join!(
        state.store.search_chats(&session.id, query, CHATS_FOUND),
        state
            .store
            .search_messages(&session.id, query, MESSAGES_FOUND),
    )?;
    let messages = hits
        .into_iter()
        .map(|hit| {
            let (before, matched, after) = snippet(&hit.message.content, query);
            MessageHit {
                page_before: hit.message.seq + super::MESSAGES_PER_PAGE as i64 / 2,
                hit,
                before,
                matched,
                after,
            }
        })
        .collect();
    Ok(SearchResults { chats, messages })
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

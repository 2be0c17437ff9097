//! `GET /search?q=`: the search form, and what matched, each message linking to its place in
//! its chat.
use axum::{
    extract::{Query, State},
    response::Html,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    chat::{self, SearchResults},
    domain::{MAX_QUERY_CHARS, SearchQuery},
    error::AppResult,
    routes::{render, views::Frame},
    session::Session,
    store::{Role, chat as chats},
};

#[derive(Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    q: String,
}

/// A message that matched, as the page shows it.
#[derive(Serialize)]
struct MessageHit {
    hit_chat_id: String,
    chat_title: String,
    message_id: String,
    role: Role,
    page_before: i64,
    before: String,
    matched: String,
    after: String,
}

#[derive(Serialize)]
struct SearchPage {
    frame: Frame,
    q: String,
    searched: bool,
    chats: Vec<chats::Model>,
    messages: Vec<MessageHit>,
    max_query_chars: usize,
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<SearchForm>,
) -> AppResult<Html<String>> {
    let query = SearchQuery::parse(&form.q)?;
    let sidebar = chat::sidebar(&state, &session).await?;
    let results = match &query {
        Some(query) => chat::search(&state, &session, query).await?,
        None => SearchResults {
            chats: Vec::new(),
            messages: Vec::new(),
        },
    };
    let messages = results
        .messages
        .into_iter()
        .map(|found| MessageHit {
            hit_chat_id: found.hit.message.chat_id.to_string(),
            chat_title: found.hit.chat_title,
            message_id: found.hit.message.id.to_string(),
            role: found.hit.message.role,
            page_before: found.page_before,
            before: found.before,
            matched: found.matched,
            after: found.after,
        })
        .collect();
    let page = SearchPage {
        frame: sidebar.into(),
        q: form.q.trim().to_owned(),
        searched: query.is_some(),
        chats: results.chats,
        messages,
        max_query_chars: MAX_QUERY_CHARS,
    };
    render(&state, "search.html", page)
}

//! The Models page: the models the engine serves (the embedded engine's library, or
//! llama-server's list), what each file is, and which are loaded; while the operator downloads
//! one, `/models/events` follows it (the table again every second). A chat picks its own model
//! in its settings.
use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{
        Html,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::Stream;
use serde::Serialize;

use crate::{
    AppState, chat,
    error::AppResult,
    operator,
    routes::{
        render,
        views::{Frame, LibraryView},
    },
    session::Session,
};

#[derive(Serialize)]
struct ModelsPage {
    frame: Frame,
    #[serde(flatten)]
    library: LibraryView,
    /// The embedded engine's library (its folder is not shown: it is the server's business).
    embedded: bool,
    /// The operator's browser: a link to /admin.
    signed_in_operator: bool,
}

/// `GET /models`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> AppResult<Html<String>> {
    let (sidebar, models) = tokio::join!(chat::sidebar(&state, &session), chat::models(&state));
    let page = ModelsPage {
        frame: sidebar?.into(),
        library: LibraryView::new(models, false),
        embedded: state.lm.kind() == "embedded",
        signed_in_operator: operator::operator_of(&state, &headers, Some(&session)).is_some(),
    };
    render(&state, "models.html", page)
}

/// How often a page following a download gets the table again.
const EVERY: Duration = Duration::from_secs(1);

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    /// The table of /admin (the operator's actions), else the Models page's.
    #[serde(default)]
    admin: bool,
}

/// `GET /models/events`: the library's table (`library` events, `fragments/model_rows.html`)
/// every second while a download runs, then once more and `done`.
pub async fn events(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let operator = query.admin && operator::operator_of(&state, &headers, Some(&session)).is_some();
    enum Next {
        Table,
        Done,
        End,
    }
    let stream = futures::stream::unfold((state, Next::Table), move |(state, next)| async move {
        match next {
            Next::End => None,
            // Some data: browsers never dispatch an event without any.
            Next::Done => Some((
                Ok(Event::default().event("done").data("done")),
                (state, Next::End),
            )),
            Next::Table => {
                tokio::time::sleep(EVERY).await;
                let library = LibraryView::new(chat::models(&state).await, operator);
                let next = if library.downloading {
                    Next::Table
                } else {
                    Next::Done
                };
                let html = state
                    .templates
                    .render("fragments/model_rows.html", &library)
                    .unwrap_or_else(|e| {
                        tracing::error!("rendering the model table: {e:#}");
                        String::new()
                    });
                Some((
                    Ok(Event::default().event("library").data(html)),
                    (state, next),
                ))
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

//! A chat's title, written by the model after its first complete reply (while the title is
//! still the first words of the first message).
use std::{sync::Arc, time::Duration};

use crate::lm::{PromptMessage, ReplyOptions};

use super::{Inner, Reply};

/// Marks the chat as waiting for its title, when this reply may be its first complete one
/// (only a chat's first replies can be: later ones cost nothing here). Called before the
/// reply's end is saved, so that nobody sees the reply complete and the title not pending.
pub(super) fn reserve(inner: &Inner, reply: &Reply) -> bool {
    if reply.row.seq > crate::store::TITLE_LOOKAHEAD as i64 {
        return false;
    }
    inner.lock().titles.insert(reply.chat_id);
    true
}

/// After a reserved chat's reply is saved: when its title is still the first words of the
/// first message, ask the model for a better one, in the background; otherwise the reservation
/// is dropped. Returns whether a title is being written.
pub(super) async fn start(inner: &Arc<Inner>, reply: &Reply) -> bool {
    let chat_id = reply.chat_id;
    let candidate = match inner
        .store
        .title_candidate(&reply.session_id, chat_id)
        .await
    {
        Ok(Some(candidate)) => candidate,
        Ok(None) => {
            inner.lock().titles.remove(&chat_id);
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "checking whether a chat needs a title");
            inner.lock().titles.remove(&chat_id);
            return false;
        }
    };
    let session_id = reply.session_id.clone();
    let inner = inner.clone();
    // Tracked, so that shutdown waits for it (or interrupts it) like a reply.
    let tasks = inner.tasks.clone();
    tasks.spawn(async move {
        let prompt = title_prompt(&candidate.first_message, &candidate.first_reply);
        let options = ReplyOptions {
            model: candidate.model.clone(),
            max_tokens: 24,
            temperature: 0.2,
            top_p: inner.settings.top_p,
            seed: inner.settings.seed,
        };
        let answer = tokio::select! {
            answer = inner.lm.complete(&prompt, &options, Duration::from_secs(30)) => answer,
            // Shutdown's grace period is over: a title is not worth waiting for.
            _ = inner.interrupt.cancelled() => Err(crate::lm::LmError::Engine(
                "the app is shutting down".into(),
            )),
        };
        match answer {
            Ok(answer) => match clean_generated_title(&answer) {
                Some(title) => {
                    if let Err(e) = inner
                        .store
                        .replace_automatic_title(&session_id, chat_id, &candidate.title, &title)
                        .await
                    {
                        tracing::warn!(error = %e, "saving a generated title");
                    }
                }
                None => {
                    tracing::info!(%chat_id, "the model's title was unusable; the first words stay")
                }
            },
            Err(e) => {
                tracing::info!(error = %e, %chat_id, "no generated title; the first words stay")
            }
        }
        inner.lock().titles.remove(&chat_id);
    });
    true
}

/// The request for a title: the start of the conversation, clipped.
fn title_prompt(first_message: &str, first_reply: &str) -> Vec<PromptMessage> {
    let clip = |text: &str, n: usize| text.chars().take(n).collect::<String>();
    vec![
        PromptMessage {
            role: "system",
            images: Vec::new(),
            content: "You name conversations. Answer with a title of at most six words for the conversation below: no quotes, no trailing punctuation, nothing else.".into(), tool_calls: Vec::new(), tool_call_id: None },
        PromptMessage {
            role: "user",
            images: Vec::new(),
            content: format!(
                "User: {}\n\nAssistant: {}\n\nTitle:",
                clip(first_message, 1000),
                clip(first_reply, 1000)
            ), tool_calls: Vec::new(), tool_call_id: None },
    ]
}

/// The model's title on one line, without quotes, a "Title:" label or a trailing full stop;
/// `None` when nothing usable is left.
pub fn clean_generated_title(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line);
    let quotes: &[char] = &['"', '\'', '“', '”', '‘', '’', '*', '`', '#'];
    let title = line
        .trim()
        .trim_matches(quotes)
        .trim()
        .trim_end_matches(['.', '!', ':', ';', ','])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if title.is_empty() || title.contains('\0') {
        return None;
    }
    Some(crate::store::title_from(&title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_titles_are_cleaned_or_refused() {
        assert_eq!(
            clean_generated_title("\"Rust ownership, explained.\"\nMore text").as_deref(),
            Some("Rust ownership, explained")
        );
        assert_eq!(
            clean_generated_title("  Title: **Trip   planning**  ").as_deref(),
            Some("Trip planning")
        );
        assert_eq!(clean_generated_title("\n\n  \"\"  "), None);
        assert_eq!(clean_generated_title(""), None);
        let long = clean_generated_title(&"word ".repeat(40)).unwrap();
        assert!(long.chars().count() <= 61, "{long}");
    }
}

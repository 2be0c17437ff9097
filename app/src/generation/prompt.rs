//! What the model is asked: the system prompt and as much recent history as fits its context,
//! with the chat's settings; and the request for a chat's title.
use crate::{
    lm::{LmError, PromptMessage, ReplyOptions},
    store::{Role, Status, chat, message},
};

use super::GenerationSettings;

/// What a reply is generated with, from the chat's settings and the configured defaults.
pub fn reply_options(settings: &GenerationSettings, chat: &chat::Model) -> ReplyOptions {
    ReplyOptions {
        model: chat.model.clone(),
        max_tokens: chat
            .max_tokens
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(settings.max_tokens),
        temperature: chat.temperature.unwrap_or(settings.temperature),
        top_p: settings.top_p,
        seed: settings.seed,
    }
}

/// Builds the prompt: the system prompt, then the history trimmed oldest-first so that it fits
/// `context` tokens with room left for the reply. The system prompt and the newest message always
/// stay; when even they do not fit, that is an error before the model is called. Replies that
/// failed are left out, and of several replies to one message only the last counts. `count`
/// gives a message's cost in tokens (the engine's tokenizer, or an estimate).
pub fn fit_to_context(
    system_prompt: &str,
    history: &[message::Model],
    context: Option<u32>,
    max_reply_tokens: u32,
    count: &dyn Fn(&PromptMessage) -> u32,
) -> Result<Vec<PromptMessage>, LmError> {
    let mut turns: Vec<PromptMessage> = Vec::with_capacity(history.len());
    for message in history {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        if message.superseded {
            continue;
        }
        if message.role == Role::Assistant
            && (message.status == Status::Error
                || message.status == Status::Streaming
                || message.content.is_empty())
        {
            continue;
        }
        if role == "assistant" && turns.last().is_some_and(|t| t.role == "assistant") {
            turns.pop();
        }
        turns.push(PromptMessage {
            role,
            content: message.content.clone(),
        });
    }
    // A new reply answers the latest user message: earlier replies to it are not part of its prompt.
    while turns.last().is_some_and(|t| t.role == "assistant") {
        turns.pop();
    }
    let system = (!system_prompt.trim().is_empty()).then(|| PromptMessage {
        role: "system",
        content: system_prompt.to_owned(),
    });

    let Some(context) = context else {
        return Ok(system.into_iter().chain(turns).collect());
    };
    // Room for the reply: up to a quarter of the context.
    let budget = context.saturating_sub(max_reply_tokens.min(context / 4));
    let mut used = system.as_ref().map_or(0, count);
    let mut kept = 0;
    for (i, turn) in turns.iter().enumerate().rev() {
        let cost = count(turn);
        let newest = i + 1 == turns.len();
        if used + cost > budget {
            if newest {
                return Err(LmError::MessageTooLarge {
                    tokens: cost,
                    budget: budget.saturating_sub(used),
                });
            }
            break;
        }
        used += cost;
        kept += 1;
    }
    let first_kept = turns.len() - kept;
    Ok(system
        .into_iter()
        .chain(turns.into_iter().skip(first_kept))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    /// The estimate llama-server's engine uses (no tokenizer at hand).
    fn estimate(turn: &PromptMessage) -> u32 {
        crate::lm::estimate_tokens(&turn.content)
    }

    fn msg(seq: i64, role: Role, status: Status, content: &str) -> message::Model {
        message::Model {
            id: Uuid::now_v7(),
            chat_id: Uuid::nil(),
            session_id: "s".into(),
            seq,
            role,
            content: content.into(),
            status,
            error: None,
            finish_reason: None,
            prompt_tokens: None,
            completion_tokens: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            reasoning: None,
            superseded: false,
            owner: None,
            lease_expires_at: None,
            stop_requested: false,
            model: None,
            time_to_first_token_ms: None,
            generation_ms: None,
        }
    }

    fn roles(prompt: &[PromptMessage]) -> Vec<(&str, &str)> {
        prompt
            .iter()
            .map(|p| (p.role, p.content.as_str()))
            .collect()
    }

    #[test]
    fn without_a_budget_everything_is_sent() {
        let history = [
            msg(1, Role::Assistant, Status::Complete, "hi"),
            msg(2, Role::User, Status::Complete, "q"),
        ];
        let prompt = fit_to_context("sys", &history, None, 100, &estimate).unwrap();
        assert_eq!(
            roles(&prompt),
            [("system", "sys"), ("assistant", "hi"), ("user", "q")]
        );
    }

    #[test]
    fn oldest_turns_go_first_and_system_and_newest_stay() {
        let old = "o".repeat(300); // ~104 tokens each
        let history = [
            msg(1, Role::User, Status::Complete, &old),
            msg(2, Role::Assistant, Status::Complete, &old),
            msg(3, Role::User, Status::Complete, "newest question"),
        ];
        // 256 context, 64 reserved for the reply: 192 for the prompt; system ~8, newest ~9.
        let prompt = fit_to_context("be brief", &history, Some(256), 64, &estimate).unwrap();
        assert_eq!(prompt.first().unwrap().role, "system");
        assert_eq!(prompt.last().unwrap().content, "newest question");
        assert_eq!(
            prompt.len(),
            3,
            "one old turn dropped: {:?}",
            roles(&prompt)
        );
        assert_eq!(prompt[1].role, "assistant");
    }

    #[test]
    fn a_message_too_large_for_the_context_is_an_error() {
        let history = [msg(1, Role::User, Status::Complete, &"x".repeat(3000))];
        let error = fit_to_context("sys", &history, Some(256), 64, &estimate).unwrap_err();
        assert!(
            matches!(error, LmError::MessageTooLarge { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("too long"));
    }

    #[test]
    fn earlier_versions_of_an_edited_message_are_left_out() {
        let mut old_question = msg(3, Role::User, Status::Complete, "old question");
        old_question.superseded = true;
        let mut old_answer = msg(4, Role::Assistant, Status::Complete, "old answer");
        old_answer.superseded = true;
        let history = [
            msg(1, Role::User, Status::Complete, "q"),
            msg(2, Role::Assistant, Status::Complete, "a"),
            old_question,
            old_answer,
            msg(5, Role::User, Status::Complete, "edited question"),
        ];
        let prompt = fit_to_context("", &history, None, 10, &estimate).unwrap();
        assert_eq!(
            roles(&prompt),
            [
                ("user", "q"),
                ("assistant", "a"),
                ("user", "edited question")
            ]
        );
    }

    #[test]
    fn failed_and_superseded_replies_are_left_out() {
        let history = [
            msg(1, Role::User, Status::Complete, "q"),
            msg(2, Role::Assistant, Status::Complete, "first try"),
            msg(3, Role::Assistant, Status::Error, "partial"),
            msg(4, Role::Assistant, Status::Stopped, "second try"),
            msg(5, Role::User, Status::Complete, "q2"),
            msg(
                6,
                Role::Assistant,
                Status::Complete,
                "answer being regenerated",
            ),
        ];
        let prompt = fit_to_context("", &history, None, 10, &estimate).unwrap();
        assert_eq!(
            roles(&prompt),
            [("user", "q"), ("assistant", "second try"), ("user", "q2")]
        );
    }
}

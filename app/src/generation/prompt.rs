//! What the model is asked: the system prompt and as much recent history as fits its context,
//! with the chat's settings; and the request for a chat's title.
use crate::{
    attachments::AttachmentRef,
    domain::ToolStep,
    lm::{LmError, PromptImage, PromptMessage, ReplyOptions, ToolCall},
    store::{Role, Status, chat, message},
    tools::{ToolOutput, fenced},
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

/// How much of the model's context a chat's next prompt uses, and which messages it leaves out.
/// The pages' gauge and the API's `GET .../context` show it; counts are the engine's (exact
/// for the embedded model, an estimate for llama-server).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContextUse {
    /// The system prompt and the history the next prompt would send, in tokens.
    pub used_tokens: u32,
    /// The model's context in tokens; `None` when the engine cannot say (yet).
    pub context_tokens: Option<u32>,
    /// What a prompt may use: the context less the room kept for the reply.
    pub budget_tokens: Option<u32>,
    /// Messages older than this position no longer reach the model (trimmed to fit, or beyond
    /// the history read); `None` when every message does.
    pub first_sent_seq: Option<i64>,
    /// How many of the chat's messages that otherwise would be sent are left out to fit.
    pub left_out: u32,
    /// Counted by the model's own tokenizer; else estimated (on the safe side).
    pub exact: bool,
}

/// A message of the history as the prompt sends it, with its position in the chat: one
/// message, or for a reply that called tools its rounds (its turn with the calls, their results,
/// …, its last words), as its own prompt had them.
struct Turn {
    seq: i64,
    messages: Vec<PromptMessage>,
}

impl Turn {
    fn is_assistant(&self) -> bool {
        self.messages.first().is_some_and(|m| m.role == "assistant")
    }

    /// Its tokens: its messages', and the calls' arguments (estimated).
    fn cost(&self, count: &dyn Fn(&PromptMessage) -> u32) -> u32 {
        self.messages
            .iter()
            .map(|m| {
                count(m)
                    + m.tool_calls
                        .iter()
                        .map(|c| {
                            crate::lm::estimate_tokens(&c.name)
                                + crate::lm::estimate_tokens(&c.arguments)
                        })
                        .sum::<u32>()
            })
            .sum()
    }
}

/// A reply's messages as its rounds were: the text before each round of calls with the calls,
/// then each call's result (fenced, as the model was given it), and the text after the last.
fn reply_rounds(content: &str, steps: &[ToolStep]) -> Vec<PromptMessage> {
    let message = |role: &'static str, content: String| PromptMessage {
        role,
        content,
        images: Vec::new(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    };
    let mut messages = Vec::new();
    let mut from = 0;
    let mut rest = steps;
    while let Some(first) = rest.first() {
        let at = first.at.clamp(from, content.len());
        let round: Vec<&ToolStep> = rest.iter().take_while(|s| s.at == first.at).collect();
        rest = &rest[round.len()..];
        let text = content.get(from..at).unwrap_or_default().to_owned();
        messages.push(PromptMessage {
            tool_calls: round
                .iter()
                .map(|s| ToolCall {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    arguments: s.arguments.clone(),
                })
                .collect(),
            ..message("assistant", text)
        });
        for step in round {
            let output = ToolOutput {
                text: step.result.clone().unwrap_or_default(),
                is_error: step.is_error,
            };
            messages.push(PromptMessage {
                tool_call_id: Some(step.id.clone()),
                ..message("tool", fenced(&step.name, &output))
            });
        }
        if content.is_char_boundary(at) {
            from = at;
        }
    }
    let last = content.get(from..).unwrap_or_default();
    if !last.is_empty() || messages.is_empty() {
        messages.push(message("assistant", last.to_owned()));
    }
    messages
}

/// The history as a prompt sends it: failed and superseded replies are left out, and of several
/// replies to one message only the last counts.
fn turns(history: &[message::Model]) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::with_capacity(history.len());
    for stored in history {
        let role = match stored.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        if stored.superseded {
            continue;
        }
        if stored.role == Role::Assistant
            && (stored.status == Status::Error
                || stored.status == Status::Streaming
                || stored.content.is_empty())
        {
            continue;
        }
        if role == "assistant" && turns.last().is_some_and(Turn::is_assistant) {
            turns.pop();
        }
        let messages = match stored.role {
            Role::User => vec![user_message(
                &stored.content,
                stored.attachment_text.as_deref(),
                &stored.attachment_refs(),
            )],
            Role::Assistant => reply_rounds(&stored.content, &stored.tool_steps()),
            Role::System => vec![PromptMessage {
                role,
                content: stored.content.clone(),
                images: Vec::new(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }],
        };
        turns.push(Turn {
            seq: stored.seq,
            messages,
        });
    }
    turns
}

/// A user's message as the prompt sends it: its files' text first (each labelled with its
/// name), then what the user wrote; its images to be read from the store (a model that cannot
/// see gets a note instead, at the end of `build_prompt`).
pub fn user_message(
    text: &str,
    attachment_text: Option<&str>,
    attachments: &[AttachmentRef],
) -> PromptMessage {
    let content = match attachment_text {
        Some(files) if text.trim().is_empty() => files.to_owned(),
        Some(files) => format!("{files}\n\n{text}"),
        None => text.to_owned(),
    };
    let images = attachments
        .iter()
        .filter(|a| a.is_image())
        .map(|a| PromptImage {
            attachment_id: a.id,
            media_type: a.media_type.clone(),
            data: None,
        })
        .collect();
    PromptMessage {
        role: "user",
        content,
        images,
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn system_turn(system_prompt: &str) -> Option<PromptMessage> {
    (!system_prompt.trim().is_empty()).then(|| PromptMessage {
        role: "system",
        images: Vec::new(),
        content: system_prompt.to_owned(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    })
}

/// What a prompt may use of `context` tokens: room for the reply is kept, up to a quarter.
fn budget(context: u32, max_reply_tokens: u32) -> u32 {
    context.saturating_sub(max_reply_tokens.min(context / 4))
}

/// How many of the newest `turns` fit `budget` after `used` tokens, and the tokens they bring.
fn newest_that_fit(
    turns: &[Turn],
    mut used: u32,
    budget: u32,
    count: &dyn Fn(&PromptMessage) -> u32,
) -> (usize, u32) {
    let mut kept = 0;
    for turn in turns.iter().rev() {
        let cost = turn.cost(count);
        if used + cost > budget {
            break;
        }
        used += cost;
        kept += 1;
    }
    (kept, used)
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
    let mut turns = turns(history);
    // A new reply answers the latest user message: earlier replies to it are not part of its prompt.
    while turns.last().is_some_and(Turn::is_assistant) {
        turns.pop();
    }
    let system = system_turn(system_prompt);
    let Some(context) = context else {
        return Ok(system
            .into_iter()
            .chain(turns.into_iter().flat_map(|t| t.messages))
            .collect());
    };
    let budget = budget(context, max_reply_tokens);
    let used = system.as_ref().map_or(0, count);
    let (kept, _) = newest_that_fit(&turns, used, budget, count);
    if kept == 0
        && let Some(newest) = turns.last()
    {
        return Err(LmError::MessageTooLarge {
            tokens: newest.cost(count),
            budget: budget.saturating_sub(used),
        });
    }
    let first_kept = turns.len() - kept;
    Ok(system
        .into_iter()
        .chain(turns.into_iter().skip(first_kept).flat_map(|t| t.messages))
        .collect())
}

/// What the chat's next prompt uses of the context: the system prompt and as much of `history`
/// as fits with room for a new message. `complete` says `history` is the whole chat (else it is
/// its newest part, and older messages count as left out).
pub fn context_use(
    system_prompt: &str,
    history: &[message::Model],
    complete: bool,
    context: Option<u32>,
    max_reply_tokens: u32,
    count: &dyn Fn(&PromptMessage) -> u32,
) -> ContextUse {
    let turns = turns(history);
    let system = system_turn(system_prompt);
    let used = system.as_ref().map_or(0, count);
    let oldest_read = history.first().map(|m| m.seq);
    let everything_before_read = (!complete).then_some(oldest_read).flatten();
    let Some(context) = context else {
        let used = used + turns.iter().map(|t| t.cost(count)).sum::<u32>();
        return ContextUse {
            used_tokens: used,
            context_tokens: None,
            budget_tokens: None,
            first_sent_seq: everything_before_read,
            left_out: 0,
            exact: false,
        };
    };
    let budget = budget(context, max_reply_tokens);
    let (kept, used) = newest_that_fit(&turns, used, budget, count);
    let left_out = turns.len() - kept;
    let first_sent_seq = if left_out > 0 {
        // Between the last left out and the first kept: failed replies there are not sent either.
        Some(turns[left_out - 1].seq + 1)
    } else {
        everything_before_read
    };
    ContextUse {
        used_tokens: used,
        context_tokens: Some(context),
        budget_tokens: Some(budget),
        first_sent_seq,
        left_out: u32::try_from(left_out).unwrap_or(u32::MAX),
        exact: false,
    }
}

/// Whether a new `message` (with its files: [`user_message`]) can reach the model at all: with
/// the system prompt, within the budget. Older history is trimmed to make room, so only these
/// two count.
pub fn check_message_fits(
    system_prompt: &str,
    message: &PromptMessage,
    context: u32,
    max_reply_tokens: u32,
    count: &dyn Fn(&PromptMessage) -> u32,
) -> Result<(), LmError> {
    let budget = budget(context, max_reply_tokens);
    let used = system_turn(system_prompt).as_ref().map_or(0, count);
    let tokens = count(message);
    if used + tokens > budget {
        return Err(LmError::MessageTooLarge {
            tokens,
            budget: budget.saturating_sub(used),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// The estimate llama-server's engine uses (no tokenizer at hand).
    fn estimate(turn: &PromptMessage) -> u32 {
        crate::lm::estimate_tokens(&turn.content)
    }

    fn msg(seq: i64, role: Role, status: Status, content: &str) -> message::Model {
        message::Model {
            seq,
            role,
            content: content.into(),
            status,
            ..crate::store::test_message()
        }
    }

    fn roles(prompt: &[PromptMessage]) -> Vec<(&str, &str)> {
        prompt
            .iter()
            .map(|p| (p.role, p.content.as_str()))
            .collect()
    }

    #[test]
    fn a_reply_that_called_tools_is_sent_as_its_rounds_were() {
        let step = |id: &str, at: usize| ToolStep {
            id: id.into(),
            name: "fetch_url".into(),
            arguments: "{}".into(),
            at,
            result: Some(format!("page {id}")),
            is_error: false,
            duration_ms: Some(3),
            approval: None,
        };
        let reply = message::Model {
            tool_calls: ToolStep::column(&[step("a", 6), step("b", 6), step("c", 12)]),
            ..msg(2, Role::Assistant, Status::Complete, "Look. Again. Done.")
        };
        let history = [
            msg(1, Role::User, Status::Complete, "q"),
            reply,
            msg(3, Role::User, Status::Complete, "and then?"),
        ];
        let prompt = fit_to_context("", &history, None, 100, &estimate).unwrap();
        let shape: Vec<(&str, &str, usize, Option<&str>)> = prompt
            .iter()
            .map(|m| {
                (
                    m.role,
                    m.content.as_str(),
                    m.tool_calls.len(),
                    m.tool_call_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(shape[0], ("user", "q", 0, None));
        assert_eq!(shape[1], ("assistant", "Look. ", 2, None));
        assert_eq!((shape[2].0, shape[2].3), ("tool", Some("a")));
        assert!(shape[2].1.contains("page a"));
        assert_eq!((shape[3].0, shape[3].3), ("tool", Some("b")));
        assert_eq!(shape[4], ("assistant", "Again.", 1, None));
        assert_eq!((shape[5].0, shape[5].3), ("tool", Some("c")));
        assert_eq!(shape[6], ("assistant", " Done.", 0, None));
        assert_eq!(shape[7], ("user", "and then?", 0, None));
        assert_eq!(shape.len(), 8);
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

    #[test]
    fn the_gauge_counts_the_next_prompt_with_the_latest_reply_in_it() {
        let history = [
            msg(1, Role::Assistant, Status::Complete, "hello"),
            msg(2, Role::User, Status::Complete, "question"),
            msg(3, Role::Assistant, Status::Error, "half an ans"),
            msg(4, Role::Assistant, Status::Complete, "answer"),
        ];
        let used = context_use("sys", &history, true, Some(4096), 512, &estimate);
        // The next prompt: sys, hello, question, answer (the failed reply is not sent).
        let expected: u32 = ["sys", "hello", "question", "answer"]
            .iter()
            .map(|t| crate::lm::estimate_tokens(t))
            .sum();
        assert_eq!(used.used_tokens, expected);
        assert_eq!(used.context_tokens, Some(4096));
        assert_eq!(used.budget_tokens, Some(4096 - 512));
        assert_eq!((used.first_sent_seq, used.left_out), (None, 0));
    }

    #[test]
    fn the_gauge_says_where_the_messages_left_out_end() {
        let old = "o".repeat(300); // 104 tokens each
        let history = [
            msg(1, Role::User, Status::Complete, &old),
            msg(2, Role::Assistant, Status::Complete, &old),
            msg(3, Role::User, Status::Complete, &old),
            msg(4, Role::Assistant, Status::Error, "failed"),
            msg(5, Role::Assistant, Status::Complete, "short answer"),
        ];
        // 256 context, 64 for the reply: 192; system 5, answer 8, one old turn 104; not two.
        let used = context_use("be", &history, true, Some(256), 64, &estimate);
        assert_eq!(used.left_out, 2);
        // After the last one left out (seq 2), so the failed reply is below the line too.
        assert_eq!(used.first_sent_seq, Some(3));
        assert_eq!(used.used_tokens, 5 + 104 + 8);
        assert!(used.used_tokens <= used.budget_tokens.unwrap());
        // The reply's prompt for the same history agrees on what fits.
        let mut with_question = history.to_vec();
        with_question.push(msg(6, Role::User, Status::Complete, "q"));
        let prompt = fit_to_context("be", &with_question, Some(256), 64, &estimate).unwrap();
        assert!(
            !prompt
                .iter()
                .any(|p| p.content == old && p.role == "assistant")
        );
    }

    #[test]
    fn history_beyond_what_was_read_counts_as_left_out() {
        let history = [
            msg(41, Role::User, Status::Complete, "q"),
            msg(42, Role::Assistant, Status::Complete, "a"),
        ];
        let used = context_use("", &history, false, Some(4096), 100, &estimate);
        assert_eq!((used.first_sent_seq, used.left_out), (Some(41), 0));
        let used = context_use("", &history, true, Some(4096), 100, &estimate);
        assert_eq!(used.first_sent_seq, None);
    }

    #[test]
    fn without_a_known_context_the_gauge_counts_everything() {
        let history = [msg(1, Role::User, Status::Complete, &"x".repeat(30_000))];
        let used = context_use("", &history, true, None, 100, &estimate);
        assert_eq!(used.used_tokens, 10_004);
        assert_eq!((used.context_tokens, used.budget_tokens), (None, None));
        assert_eq!((used.first_sent_seq, used.left_out), (None, 0));
    }

    #[test]
    fn a_message_sends_its_files_text_first_and_its_images_to_be_read() {
        let mut with_files = msg(1, Role::User, Status::Complete, "What is in these?");
        let image = AttachmentRef {
            id: Uuid::now_v7(),
            name: "cat.png".into(),
            media_type: "image/png".into(),
            size_bytes: 10,
        };
        let text_file = AttachmentRef {
            media_type: "text/plain".into(),
            name: "a.txt".into(),
            ..image.clone()
        };
        with_files.attachments = Some(serde_json::to_string(&[&text_file, &image]).unwrap());
        with_files.attachment_text = Some("Attached file “a.txt”:\n```\nhello\n```".into());
        let only_files = msg(3, Role::User, Status::Complete, "");
        let only_files = message::Model {
            attachment_text: Some("Attached file “b.txt”:\n```\nb\n```".into()),
            ..only_files
        };
        let history = [
            with_files,
            msg(2, Role::Assistant, Status::Complete, "A cat."),
            only_files,
        ];
        let prompt = fit_to_context("", &history, None, 100, &estimate).unwrap();
        assert_eq!(
            prompt[0].content,
            "Attached file “a.txt”:\n```\nhello\n```\n\nWhat is in these?"
        );
        assert_eq!(prompt[0].images.len(), 1);
        assert_eq!(prompt[0].images[0].attachment_id, image.id);
        assert!(prompt[0].images[0].data.is_none());
        assert_eq!(prompt[2].content, "Attached file “b.txt”:\n```\nb\n```");
        // The gauge counts the files' text too.
        let used = context_use("", &history, true, None, 100, &estimate);
        let sent: u32 = prompt.iter().map(estimate).sum();
        assert_eq!(used.used_tokens, sent);
    }

    #[test]
    fn a_new_message_fits_when_it_and_the_system_prompt_do() {
        // 256 context, 64 for the reply: 192 tokens for the system prompt and the message.
        let fits = |text: &str| {
            check_message_fits("sys", &user_message(text, None, &[]), 256, 64, &estimate)
        };
        // "sys": 5 tokens; 549 bytes: 187 tokens; 192 in all.
        assert_eq!(fits(&"y".repeat(549)), Ok(()));
        let error = fits(&"y".repeat(552)).unwrap_err();
        assert_eq!(
            error,
            LmError::MessageTooLarge {
                tokens: 188,
                budget: 187
            }
        );
        assert!(
            error
                .to_string()
                .contains("too long for the model's context")
        );
    }
}

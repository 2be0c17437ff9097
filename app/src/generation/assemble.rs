//! A reply's prompt: the system prompt and as much recent history as fits the model's context,
//! with the images a model that can see is sent.
use uuid::Uuid;

use super::{Inner, Reply, failed, fit_to_context, reply_options};
use crate::{
    lm::{IMAGE_TOKENS, PromptMessage, ReplyOptions},
    store::{ReplyEnd, Status, chat},
};

/// System prompt + as much recent history as fits the model's context, and the chat's settings.
pub(super) async fn build_prompt(
    inner: &Inner,
    reply: &Reply,
) -> Result<(Vec<PromptMessage>, ReplyOptions), ReplyEnd> {
    let not_loaded = |e: sea_orm::DbErr| {
        tracing::error!(error = %e, "loading the conversation failed");
        ReplyEnd::new(
            Status::Error,
            Some("The conversation could not be loaded from the database. Please retry.".into()),
        )
    };
    let history = inner
        .store
        .prompt_history(
            &reply.session_id,
            reply.chat_id,
            reply.row.seq,
            inner.settings.history_limit,
        )
        .await
        .map_err(not_loaded)?;
    // Every reply answers a stored message: no history means the chat was deleted meanwhile.
    if history.is_empty() {
        let gone = "This chat no longer exists.".to_owned();
        return Err(ReplyEnd::new(Status::Error, Some(gone)));
    }
    let history = without_steps_unless_tools(inner, history);
    let options = reply_options(&inner.settings, &reply.chat);
    let context = inner.context_tokens(&options).await;
    let mut prompt = fit_to_context(
        inner.system_prompt(&reply.chat),
        &history,
        context,
        options.max_tokens,
        &inner.counter(options.model.as_deref()),
    )
    .map_err(failed)?;
    attach_images(inner, reply, &mut prompt)
        .await
        .map_err(not_loaded)?;
    // Continue: the reply's text so far goes last, as the assistant's, for the model to go on
    // from (llama-server and the embedded engine both continue a final assistant message).
    if !reply.row.content.is_empty() {
        prompt.push(PromptMessage {
            role: "assistant",
            content: reply.row.content.clone(),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    Ok((prompt, options))
}

/// The images of the prompt's messages: read from the store for a model that can see; for one
/// that cannot (the chat's model changed since they were sent), each message says an image is
/// left out.
async fn attach_images(
    inner: &Inner,
    reply: &Reply,
    prompt: &mut [PromptMessage],
) -> Result<(), sea_orm::DbErr> {
    let wanted: Vec<Uuid> = prompt
        .iter()
        .flat_map(|m| m.images.iter().map(|i| i.attachment_id))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    if !inner.lm.has_vision(reply.chat.model.as_deref()).await {
        for message in prompt.iter_mut().filter(|m| !m.images.is_empty()) {
            message.images.clear();
            message.content.push_str("\n\n");
            message.content.push_str(crate::attachments::IMAGE_LEFT_OUT);
        }
        return Ok(());
    }
    let mut data = inner
        .store
        .attachment_data(&reply.session_id, reply.chat_id, &wanted)
        .await?;
    for image in prompt.iter_mut().flat_map(|m| m.images.iter_mut()) {
        image.data = data.remove(&image.attachment_id);
    }
    Ok(())
}

impl Inner {
    /// The chat's system prompt, or the configured one.
    pub(super) fn system_prompt<'a>(&'a self, chat: &'a chat::Model) -> &'a str {
        chat.system_prompt
            .as_deref()
            .unwrap_or(&self.settings.system_prompt)
    }

    /// The model's context in tokens: configured (`LM_CONTEXT_TOKENS`), else the engine's.
    pub(super) async fn context_tokens(&self, options: &ReplyOptions) -> Option<u32> {
        match self.settings.context_tokens {
            Some(configured) => Some(configured),
            None => self.lm.context_tokens(options.model.as_deref()).await,
        }
    }

    /// A prompt message's cost in tokens, as the engine counts it for `model`.
    pub(super) fn counter<'a>(
        &'a self,
        model: Option<&'a str>,
    ) -> impl Fn(&PromptMessage) -> u32 + 'a {
        move |turn: &PromptMessage| {
            let images = u32::try_from(turn.images.len()).unwrap_or(u32::MAX);
            self.lm
                .count_tokens(model, turn.role, &turn.content)
                .saturating_add(images.saturating_mul(IMAGE_TOKENS))
        }
    }
}

/// The history as the prompt holds it: earlier replies' calls of tools and their results while
/// tools are configured (the model sees what it was given), else their words only (with no
/// tools, the prompt is what it was before tools).
pub(super) fn without_steps_unless_tools(
    inner: &Inner,
    mut history: Vec<crate::store::message::Model>,
) -> Vec<crate::store::message::Model> {
    if !inner.tools.configured() {
        for message in &mut history {
            message.tool_calls = None;
        }
    }
    history
}

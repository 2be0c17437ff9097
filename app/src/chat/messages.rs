//! Messages: send, edit and resend, regenerate (or retry), stop. Each new reply is stored with
//! its question in one transaction, then handed to the generation task (`generation`).
use std::{net::IpAddr, time::Duration};

use uuid::Uuid;

use crate::{
    AppState,
    attachments::{self, Attachment, Upload, prompt_text},
    domain::{INTERRUPTED, MessageText},
    error::{AppError, AppResult},
    generation::user_message,
    limits::Action,
    lm::{LmError, PromptMessage},
    session::Session,
    store::{NewReply, ReplyEnd, Role, SelectVersion, Status, chat, message},
};

/// Why an edit is refused: the message is not the user's, or not on the chat's path.
const NOT_EDITABLE: &str = "Only your own messages of the versions shown can be edited.";

pub const BUSY: &str = "A reply is still being written in this chat. Wait for it to finish or stop it, then send again.";

/// A new reply, started, and the user's message it answers (none for Regenerate).
pub struct Exchange {
    pub user: Option<message::Model>,
    pub reply: message::Model,
    /// The sender's display name, read in the same statement (the page shows it on the message).
    pub display_name: Option<String>,
}

/// Stores the user's message and an empty reply in one transaction, then starts the reply.
/// "A reply is already in progress" is decided by the database, in that transaction.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn send(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    chat_id: Uuid,
    text: &MessageText,
    uploads: Vec<Upload>,
) -> AppResult<Exchange> {
    state
        .rate_limits
        .check(Action::Send, &session.id, address)
        .await?;
    let chat = super::find(state, session, chat_id).await?;
    let files = read_attachments(state, chat.model.as_deref(), uploads).await?;
    let message = new_user_message(text, &files);
    refuse_unless_fits(state, Some(&chat), &message, !files.is_empty()).await?;
    let taken = super::account::take_reply(state, session).await?;
    let outcome = state
        .store
        .add_exchange(&session.id, chat_id, text.as_str(), &files)
        .await;
    let outcome = super::account::kept(state, session, taken, outcome).await?;
    start(state, session, outcome).await
}

/// Checks and reads a message's uploads (off the async threads: a PDF's text takes a while).
/// An image needs a model that can see; the model server is asked only when one is attached.
pub(super) async fn read_attachments(
    state: &AppState,
    model: Option<&str>,
    uploads: Vec<Upload>,
) -> AppResult<Vec<Attachment>> {
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let limits = state.config.attachment_limits();
    attachments::check_count(uploads.len(), limits)?;
    let vision = state.lm.has_vision(model).await;
    attachments::prepare_off_thread(uploads, limits, vision, &state.config.pdf_limits()).await
}

/// Edit and resend: a new version of a user message on the chat's path, with `text`, and a new
/// reply to it; it becomes the path. The edited version and what followed it stay, to be chosen
/// again (`select_version`).
#[tracing::instrument(skip_all, fields(%chat_id, %message_id))]
pub async fn edit(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    chat_id: Uuid,
    message_id: Uuid,
    text: &MessageText,
) -> AppResult<Exchange> {
    state
        .rate_limits
        .check(Action::Send, &session.id, address)
        .await?;
    // The new version keeps the files of the one it replaces: they count too.
    let (chat, edited) = tokio::try_join!(super::find(state, session, chat_id), async {
        Ok(state
            .store
            .find_message(&session.id, chat_id, message_id)
            .await?)
    },)?;
    let message = match &edited {
        Some(m) => user_message(
            text.as_str(),
            m.attachment_text.as_deref(),
            &m.attachment_refs(),
        ),
        None => user_message(text.as_str(), None, &[]),
    };
    let with_files = edited.is_some_and(|m| m.attachments.is_some());
    refuse_unless_fits(state, Some(&chat), &message, with_files).await?;
    let taken = super::account::take_reply(state, session).await?;
    let outcome = state
        .store
        .edit_exchange(&session.id, chat_id, message_id, text.as_str())
        .await;
    let outcome = super::account::kept(state, session, taken, outcome).await?;
    start(state, session, outcome).await
}

/// A message to edit (the edit form starts from it): a user message on the chat's path.
#[tracing::instrument(skip_all, fields(%chat_id, %message_id))]
pub async fn editable(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    message_id: Uuid,
) -> AppResult<message::Model> {
    let message = state
        .store
        .find_message(&session.id, chat_id, message_id)
        .await?
        .ok_or(AppError::NotFound("message"))?;
    if message.role != Role::User || message.superseded {
        return Err(AppError::Conflict(NOT_EDITABLE.into()));
    }
    Ok(message)
}

/// A new version of the reply to the latest user message (Regenerate, or Retry after a
/// failure); the one it replaces stays, to be chosen again.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn regenerate(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    chat_id: Uuid,
) -> AppResult<Exchange> {
    state
        .rate_limits
        .check(Action::Send, &session.id, address)
        .await?;
    let taken = super::account::take_reply(state, session).await?;
    let outcome = state.store.add_reply(&session.id, chat_id).await;
    let outcome = super::account::kept(state, session, taken, outcome).await?;
    start(state, session, outcome).await
}

/// Continue: the chat's latest reply, stopped or cut at its length, goes on from its text; the
/// same message grows. Counts against the send limit.
#[tracing::instrument(skip_all, fields(%message_id))]
pub async fn continue_reply(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<Exchange> {
    state
        .rate_limits
        .check(Action::Send, &session.id, address)
        .await?;
    let chat_id = chat_of(state, session, chat_id, message_id).await?;
    let taken = super::account::take_reply(state, session).await?;
    let outcome = state
        .store
        .reopen_reply(&session.id, chat_id, message_id)
        .await;
    let outcome = super::account::kept(state, session, taken, outcome).await?;
    start(state, session, outcome).await
}

/// Makes a version of a message the one shown and sent to the model: the chat's path runs
/// through it, and below it through the newest versions. Returns the message's chat. `chat_id`,
/// when given, must be the message's chat (the API names the message alone). Refused while a
/// reply is being written in the chat.
#[tracing::instrument(skip_all, fields(%message_id))]
pub async fn select_version(
    state: &AppState,
    session: &Session,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<Uuid> {
    let chat_id = chat_of(state, session, chat_id, message_id).await?;
    match state
        .store
        .select_version(&session.id, chat_id, message_id)
        .await?
    {
        SelectVersion::Selected => Ok(chat_id),
        SelectVersion::NoSuchChat => Err(AppError::NotFound("chat")),
        SelectVersion::NoSuchMessage => Err(AppError::NotFound("message")),
        SelectVersion::Busy => Err(AppError::Conflict(BUSY.into())),
    }
}

/// The chat a message is in: `chat_id` when the page's route names it (the store checks that
/// the message is in it), else the message's own (the API names the message alone).
async fn chat_of(
    state: &AppState,
    session: &Session,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<Uuid> {
    match chat_id {
        Some(chat_id) => Ok(chat_id),
        None => Ok(state
            .store
            .find_session_message(&session.id, message_id)
            .await?
            .ok_or(AppError::NotFound("message"))?
            .chat_id),
    }
}

/// A message that cannot reach the model (with the system prompt and its files, it is larger
/// than the context allows) is refused before anything is stored; the composer keeps it.
/// `chat` is `None` for a chat being created.
pub(super) async fn refuse_unless_fits(
    state: &AppState,
    chat: Option<&chat::Model>,
    message: &PromptMessage,
    with_files: bool,
) -> AppResult<()> {
    state
        .generations
        .check_message_fits(chat, message)
        .await
        .map_err(|e| match e {
            LmError::MessageTooLarge { tokens, budget } if with_files => AppError::TooLarge(format!(
                "Your message with its files is too long for the model's context (about {tokens} tokens; at most {budget} fit). Attach fewer or smaller files."
            )),
            e => AppError::TooLarge(e.to_string()),
        })
}

/// A message ready for the fit check (`generation::user_message`), from files read now.
pub(super) fn new_user_message(text: &MessageText, files: &[Attachment]) -> PromptMessage {
    user_message(
        text.as_str(),
        prompt_text(files).as_deref(),
        &attachments::references(files),
    )
}

/// Starts the reply the store made, or says why there is none.
async fn start(state: &AppState, session: &Session, outcome: NewReply) -> AppResult<Exchange> {
    let (user, reply, chat, display_name) = match outcome {
        NewReply::Started {
            user,
            reply,
            chat,
            display_name,
        } => (user, reply, chat, display_name),
        NewReply::NoSuchChat => return Err(AppError::NotFound("chat")),
        NewReply::NoSuchMessage => return Err(AppError::NotFound("message")),
        NewReply::Busy => return Err(AppError::Conflict(BUSY.into())),
        NewReply::NothingToAnswer => {
            return Err(AppError::Invalid(
                "There is no message to answer yet: send one first.".into(),
            ));
        }
        NewReply::NotEditable => return Err(AppError::Conflict(NOT_EDITABLE.into())),
        NewReply::CannotContinue => {
            return Err(AppError::Conflict(
                "Only the chat's latest reply can go on, once it was stopped or cut at its length."
                    .into(),
            ));
        }
    };
    start_reply(state, session, &reply, &chat).await?;
    Ok(Exchange {
        user: user.map(|u| *u),
        reply: *reply,
        display_name,
    })
}

/// Hands a stored reply to the generation task; when the app is shutting down, the reply is
/// saved as interrupted (the user's message stays) and the answer is 503.
pub(super) async fn start_reply(
    state: &AppState,
    session: &Session,
    reply: &message::Model,
    chat: &chat::Model,
) -> AppResult<()> {
    if state.generations.start(&session.id, reply, chat).is_err() {
        let end = ReplyEnd::new(Status::Interrupted, Some(INTERRUPTED.into()));
        state
            .store
            .finish_reply(&session.id, reply.id, "", "", &end)
            .await?;
        return Err(AppError::Unavailable(
            "The app is restarting; your message is saved. Please retry in a moment.".into(),
        ));
    }
    Ok(())
}

/// Stops a reply being written, keeping its text so far as `stopped`; a finished reply is left
/// as it is. `chat_id`, when given, must be the reply's chat. Returns the reply as stored now.
///
/// A reply another replica is writing gets a stop flag that its replica acts on within a
/// second; this waits (briefly) for that, and stops a reply whose replica died (its lease ran
/// out) itself.
#[tracing::instrument(skip_all, fields(%message_id))]
/// The person's answer to a call that waits for their approval: the reply goes on with the
/// call made (`allow`) or refused (told to the model). 404: no such reply here; 409: the call
/// does not wait (answered already, or the reply ended).
#[tracing::instrument(skip_all, fields(%message_id))]
pub async fn decide_tool_call(
    state: &AppState,
    session: &Session,
    chat_id: Option<Uuid>,
    message_id: Uuid,
    step_id: &str,
    allow: bool,
) -> AppResult<()> {
    let reply = state
        .store
        .find_session_message(&session.id, message_id)
        .await?
        .filter(|m| m.role == Role::Assistant && chat_id.is_none_or(|c| c == m.chat_id))
        .ok_or(AppError::NotFound("message"))?;
    let approval = match allow {
        true => crate::domain::Approval::Allowed,
        false => crate::domain::Approval::Denied,
    };
    match state
        .store
        .decide_step(&session.id, reply.id, step_id, approval)
        .await?
    {
        None => Err(AppError::NotFound("message")),
        Some(false) => Err(AppError::Conflict(
            "That call is not waiting for an answer (it was answered, or the reply ended).".into(),
        )),
        Some(true) => {
            state.generations.decided_here(reply.id);
            Ok(())
        }
    }
}

pub async fn stop(
    state: &AppState,
    session: &Session,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<message::Model> {
    let find = || async {
        state
            .store
            .find_session_message(&session.id, message_id)
            .await?
            .filter(|m| m.role == Role::Assistant && chat_id.is_none_or(|c| c == m.chat_id))
            .ok_or(AppError::NotFound("message"))
    };
    let reply = find().await?;
    if state.generations.stop(&session.id, message_id).await || reply.status != Status::Streaming {
        return find().await;
    }
    if !state.store.request_stop(&session.id, message_id).await? {
        return find().await;
    }
    // The writer acts on the flag at once when told; if the notification is lost, within a
    // second (its lease watcher reads the flag).
    if let Err(e) = state.store.notify_stop(message_id).await {
        tracing::warn!(error = %e, "telling the writing replica to stop");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if state
            .store
            .stop_abandoned_reply(&session.id, message_id)
            .await?
        {
            return find().await;
        }
        let now = find().await?;
        if now.status != Status::Streaming || tokio::time::Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

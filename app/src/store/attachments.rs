//! Files sent with messages: stored with the message in its transaction, read back to download,
//! to export, and (images) for a model that can see.
use std::collections::HashMap;

use axum::body::Bytes;
use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::{Store, attachment, chat, message};
use crate::{attachments::Attachment, domain::SessionId};

/// What a user message's row says of its files: the list (JSON) and their text for the prompt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileColumns {
    pub attachments: Option<String>,
    pub attachment_text: Option<String>,
}

impl FileColumns {
    /// For files sent now.
    pub fn of(files: &[Attachment]) -> Self {
        if files.is_empty() {
            return Self::default();
        }
        Self {
            attachments: serde_json::to_string(&crate::attachments::references(files)).ok(),
            attachment_text: crate::attachments::prompt_text(files),
        }
    }

    /// An edited message keeps the files of the one it replaces (the same rows).
    pub fn kept_from(message: &message::Model) -> Self {
        Self {
            attachments: message.attachments.clone(),
            attachment_text: message.attachment_text.clone(),
        }
    }

    pub(super) fn set_on(self, row: &mut message::ActiveModel) {
        row.attachments = Set(self.attachments);
        row.attachment_text = Set(self.attachment_text);
    }
}

/// Stores the files sent with `message_id` (in the caller's transaction).
pub(super) async fn insert_attachments(
    txn: &impl ConnectionTrait,
    chat: &chat::Model,
    message_id: Uuid,
    files: &[Attachment],
) -> Result<(), DbErr> {
    // One file per statement: each may be megabytes, and SQLite bounds a statement's size.
    for file in files {
        attachment::Entity::insert(attachment::ActiveModel {
            id: Set(file.id),
            session_id: Set(chat.session_id.clone()),
            chat_id: Set(chat.id),
            message_id: Set(message_id),
            name: Set(file.name.clone()),
            media_type: Set(file.media_type.to_owned()),
            size_bytes: Set(file.bytes.len() as i64),
            data: Set(file.bytes.to_vec()),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// One file of a chat of this session, with its bytes.
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id, %attachment_id))]
    pub async fn find_attachment(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        attachment_id: Uuid,
    ) -> Result<Option<attachment::Model>, DbErr> {
        attachment::Entity::find_by_id(attachment_id)
            .filter(attachment::Column::ChatId.eq(chat_id))
            .filter(attachment::Column::SessionId.eq(session_id.as_str()))
            .one(&self.db)
            .await
    }

    /// Every file of a chat, oldest first (an export carries them).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn chat_attachments(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
    ) -> Result<Vec<attachment::Model>, DbErr> {
        attachment::Entity::find()
            .filter(attachment::Column::ChatId.eq(chat_id))
            .filter(attachment::Column::SessionId.eq(session_id.as_str()))
            .order_by_asc(attachment::Column::Id)
            .all(&self.db)
            .await
    }

    /// The bytes of some files of a chat, by id (the images a prompt sends).
    #[tracing::instrument(level = "debug", skip_all, fields(%chat_id))]
    pub async fn attachment_data(
        &self,
        session_id: &SessionId,
        chat_id: Uuid,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Bytes>, DbErr> {
        let rows = attachment::Entity::find()
            .filter(attachment::Column::ChatId.eq(chat_id))
            .filter(attachment::Column::SessionId.eq(session_id.as_str()))
            .filter(attachment::Column::Id.is_in(ids.iter().copied()))
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.id, Bytes::from(row.data)))
            .collect())
    }
}

//! Import: a chat created from an export, with its messages.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, DbErr, Set, TransactionTrait};
use uuid::Uuid;

use super::{
    ChatSettings, FileColumns, Role, Status, Store, attachments::insert_attachments, chat,
    insert_messages, message, new_message,
};
use crate::{attachments::Attachment, domain::SessionId};

/// A chat to create from an export.
pub struct ImportedChat {
    pub title: String,
    pub settings: ChatSettings,
    pub messages: Vec<ImportedMessage>,
}

pub struct ImportedMessage {
    pub role: Role,
    pub content: String,
    pub reasoning: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    /// Off the chat's current path (`store::imported_off_path` decides).
    pub superseded: bool,
    /// The message this one follows: an index into the import's messages, before this one.
    pub parent: Option<usize>,
    pub stats: Option<crate::domain::ReplyStats>,
    pub created_at: chrono::DateTime<Utc>,
    /// Files it carried (checked like files sent now).
    pub attachments: Vec<Attachment>,
    /// A reply's calls of tools (checked by the import).
    pub tool_steps: Vec<crate::domain::ToolStep>,
}

impl Store {
    /// Creates a chat from an export, with its messages in their order. Replies that were being
    /// written when it was exported are `interrupted`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn import_chat(
        &self,
        session_id: &SessionId,
        imported: ImportedChat,
    ) -> Result<chat::Model, DbErr> {
        let now = Utc::now();
        let tools = imported.settings.tools_column();
        let txn = self.db.begin().await?;
        let chat = chat::ActiveModel {
            id: Set(Uuid::now_v7()),
            session_id: Set(session_id.as_str().to_owned()),
            title: Set(imported.title),
            created_at: Set(now),
            updated_at: Set(now),
            system_prompt: Set(imported.settings.system_prompt),
            temperature: Set(imported.settings.temperature),
            max_tokens: Set(imported.settings.max_tokens),
            tools: Set(tools),
            model: Set(imported.settings.model),
            // An imported chat starts unpinned and in no folder.
            pinned_at: Set(None),
            folder_id: Set(None),
            temporary: Set(false),
        }
        .insert(&txn)
        .await?;
        let mut files = Vec::new();
        // New ids, known before the rows are written, so that each can name its parent's.
        let ids: Vec<Uuid> = imported.messages.iter().map(|_| Uuid::now_v7()).collect();
        let rows: Vec<message::ActiveModel> = imported
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let status = match m.status {
                    Status::Streaming => Status::Interrupted,
                    other => other,
                };
                let mut row = new_message(&chat, i as i64 + 1, m.role, &m.content, status);
                row.id = Set(ids[i]);
                row.parent_id = Set(m.parent.and_then(|p| ids.get(p).copied()));
                row.reasoning = Set(m.reasoning);
                row.tool_calls = Set(crate::domain::ToolStep::column(&m.tool_steps));
                row.error = Set(m.error);
                row.superseded = Set(m.superseded);
                if let Some(stats) = m.stats {
                    row.model = Set(stats.model);
                    row.prompt_tokens = Set(stats.prompt_tokens);
                    row.completion_tokens = Set(stats.completion_tokens);
                    row.time_to_first_token_ms = Set(stats.time_to_first_token_ms);
                    row.generation_ms = Set(stats.generation_ms);
                }
                row.created_at = Set(m.created_at);
                FileColumns::of(&m.attachments).set_on(&mut row);
                if !m.attachments.is_empty() {
                    files.push((i, m.attachments));
                }
                row
            })
            .collect();
        // Bounded statements: SQLite allows at most 32,766 bound values in one.
        for batch in rows.chunks(500) {
            insert_messages(&txn, batch.to_vec()).await?;
        }
        for (i, attachments) in files {
            insert_attachments(&txn, &chat, ids[i], &attachments).await?;
        }
        txn.commit().await?;
        Ok(chat)
    }
}

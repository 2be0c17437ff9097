//! sea-orm entities for the tables the `migration` crate creates.

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chat {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "chats")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub session_id: String,
        pub title: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// The chat's own settings; `None`: the configured default.
        #[sea_orm(column_type = "Text", nullable)]
        pub system_prompt: Option<String>,
        pub temperature: Option<f32>,
        pub max_tokens: Option<i32>,
        pub model: Option<String>,
        /// When the chat was pinned to the top of the sidebar; `None`: not pinned.
        pub pinned_at: Option<DateTimeUtc>,
        /// The folder it is in (one of its session's); `None`: none.
        pub folder_id: Option<Uuid>,
        /// Not listed, never found by search, deleted once `TEMPORARY_CHAT_TTL` has passed
        /// since its last use (`updated_at`).
        pub temporary: bool,
        /// The tools its replies may call (JSON names); `None`: all of them.
        #[sea_orm(column_type = "Text", nullable)]
        pub tools: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::message::Entity")]
        Message,
    }

    impl Related<super::message::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Message.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// The chat's own settings (`None`: the configured default).
        pub fn settings(&self) -> crate::domain::ChatSettings {
            crate::domain::ChatSettings {
                system_prompt: self.system_prompt.clone(),
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                model: self.model.clone(),
                tools: self
                    .tools
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok()),
            }
        }
    }
}

pub mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        #[sea_orm(string_value = "system")]
        System,
        #[sea_orm(string_value = "user")]
        User,
        #[sea_orm(string_value = "assistant")]
        Assistant,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    #[serde(rename_all = "lowercase")]
    pub enum Status {
        /// The reply ended normally (or the message is not a reply at all).
        #[sea_orm(string_value = "complete")]
        Complete,
        /// Being generated now; `content` holds the last checkpoint.
        #[sea_orm(string_value = "streaming")]
        Streaming,
        /// The user pressed Stop; `content` is what had arrived.
        #[sea_orm(string_value = "stopped")]
        Stopped,
        /// The app stopped (crash, shutdown) while generating; `content` is the last checkpoint.
        #[sea_orm(string_value = "interrupted")]
        Interrupted,
        /// Upstream failed; `error` says how.
        #[sea_orm(string_value = "error")]
        Error,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub chat_id: Uuid,
        pub session_id: String,
        /// Position in the chat; history is ordered by it.
        pub seq: i64,
        pub role: Role,
        #[sea_orm(column_type = "Text")]
        pub content: String,
        pub status: Status,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        pub finish_reason: Option<String>,
        pub prompt_tokens: Option<i32>,
        pub completion_tokens: Option<i32>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// What a thinking model wrote before its answer, kept apart from it.
        #[sea_orm(column_type = "Text", nullable)]
        pub reasoning: Option<String>,
        /// Not on the chat's current path: another version of it (or of a message before it)
        /// is the one shown and sent to the model. Kept, to be chosen again.
        pub superseded: bool,
        /// The replica writing this reply (while `streaming`).
        pub owner: Option<String>,
        /// The owner renews this while it writes; past it, the owner is taken for dead.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// Stop was asked for on a replica other than the owner, which watches this.
        pub stop_requested: bool,
        /// A reply's stats: the model that wrote it, from asking the model to its first token,
        /// and from its first token to its last (the model's own clock when it reports one).
        pub model: Option<String>,
        pub time_to_first_token_ms: Option<i32>,
        pub generation_ms: Option<i32>,
        /// The files sent with this message, as JSON (`AttachmentRef`s: id, name, type, size);
        /// their bytes are in `attachments`. `None`: none.
        #[sea_orm(column_type = "Text", nullable)]
        pub attachments: Option<String>,
        /// The files' text as the prompt sends it before the message, each labelled with its
        /// name (`crate::attachments::prompt_text`). `None`: no text-like file.
        #[sea_orm(column_type = "Text", nullable)]
        pub attachment_text: Option<String>,
        /// The message this one follows: a reply its user message, a user message the reply
        /// before it; `None` for a chat's first. Messages with the same parent are versions of
        /// one another (`store::versions`).
        pub parent_id: Option<Uuid>,
        /// A reply's calls of tools in order, with their results, as JSON
        /// (`domain::ToolStep`s). `None`: it called none.
        #[sea_orm(column_type = "Text", nullable)]
        pub tool_calls: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::chat::Entity",
            from = "Column::ChatId",
            to = "super::chat::Column::Id",
            on_delete = "Cascade"
        )]
        Chat,
    }

    impl Related<super::chat::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Chat.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// A reply's stats; `None` for other messages and for replies that have none.
        pub fn stats(&self) -> Option<crate::domain::ReplyStats> {
            if self.role != Role::Assistant {
                return None;
            }
            crate::domain::ReplyStats::new(
                self.model.clone(),
                self.prompt_tokens,
                self.completion_tokens,
                self.time_to_first_token_ms,
                self.generation_ms,
            )
        }

        /// The reply's calls of tools, in order (none when it made none).
        pub fn tool_steps(&self) -> Vec<crate::domain::ToolStep> {
            crate::domain::ToolStep::parse_all(self.tool_calls.as_deref())
        }

        /// The files sent with this message (none when it has none, or its column is unreadable).
        pub fn attachment_refs(&self) -> Vec<crate::attachments::AttachmentRef> {
            self.attachments
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default()
        }
    }
}

pub mod attachment {
    use sea_orm::entity::prelude::*;

    /// A file sent with a message, as it was uploaded. Read only to download it, to export it,
    /// and (images) to show it to a model that can see.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub session_id: String,
        pub chat_id: Uuid,
        /// The message it was sent with (an edited message shares its files).
        pub message_id: Uuid,
        #[sea_orm(column_type = "Text")]
        pub name: String,
        pub media_type: String,
        pub size_bytes: i64,
        pub data: Vec<u8>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod share {
    use sea_orm::entity::prelude::*;

    /// A shared link: the token is the link, the snapshot the chat as it was then (JSON).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "shares")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token: String,
        pub session_id: String,
        pub chat_id: Uuid,
        #[sea_orm(column_type = "Text")]
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub snapshot: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod folder {
    use sea_orm::entity::prelude::*;

    /// A folder of a session's chats, in the sidebar.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "folders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub session_id: String,
        pub name: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod device {
    use sea_orm::entity::prelude::*;

    /// A browser a session is used from; its cookie names it. Revoked: signed out for good.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub session_id: String,
        pub label: String,
        pub created_at: DateTimeUtc,
        pub last_used_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        /// The account it is signed in to (accounts on); `None`: an anonymous session's.
        pub user_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod device_link {
    use sea_orm::entity::prelude::*;

    /// A one-time code that links another browser to a session (kept as its SHA-256).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code_hash: String,
        pub session_id: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    /// A person, as the identity provider or the trusted proxy names them; owns one session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// `oidc:{issuer} {sub}` or `header:{value}`.
        #[sea_orm(unique)]
        pub subject: String,
        pub email: Option<String>,
        pub name: Option<String>,
        /// The session every browser of theirs uses.
        #[sea_orm(unique)]
        pub session_id: String,
        /// The provider's `groups` claim named one of `ADMIN_GROUPS` at the last sign-in.
        pub in_admin_group: bool,
        pub created_at: DateTimeUtc,
        pub last_sign_in_at: DateTimeUtc,
        /// Disabled by an admin: signed out everywhere and refused from then on.
        pub disabled_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod usage_day {
    use sea_orm::entity::prelude::*;

    /// A user's replies and the tokens the model wrote for them on one UTC day.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_days")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        /// `YYYY-MM-DD`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        pub replies: i64,
        pub tokens: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

//! The use cases: one function per thing a visitor can do with their chats. Each takes the app
//! state, the visitor's [`Session`](crate::session::Session) and input already parsed into
//! [`crate::domain`] types, and returns a domain result or an [`AppError`](crate::error::AppError).
//! The HTML pages (`routes::pages`) and the JSON API (`routes::api`) are thin adapters over
//! these: extract, call, render or serialise. Nothing here speaks HTTP. See ARCHITECTURE.md.
pub mod account;
mod attachments;
mod chats;
mod devices;
mod folders;
mod messages;
mod models;
mod profile;
mod search;
mod settings;
mod shares;
mod tools;
mod transfer;

pub use attachments::attachment;
pub use chats::{
    ChatHistory, FolderOfChats, MESSAGES_PER_PAGE, MessagePage, NewChat, OpenedChat, Sidebar,
    TitleStatus, context, create, delete, delete_unused_temporary_chats, find, list, messages,
    open, rename, session_version, sidebar, title_status,
};
pub use devices::{LINK_LIFETIME, NewLink, check_link, devices, new_link, redeem_link, sign_out};
pub use folders::{create_folder, delete_folder, folders, move_to_folder, pin, rename_folder};
pub use messages::{
    Exchange, continue_reply, decide_tool_call, edit, editable, regenerate, select_version, send,
    stop,
};
pub use models::{download_model, hub_files, remove_model, set_default_model};
pub use profile::set_display_name;
pub use search::{MessageHit, SearchResults, search};
pub use settings::{model_choices, models, update_settings};
pub use shares::{SharedChat, check_shared, revoke_share, share, shared, shares};
pub use tools::{ServerJson, ToolInfo, ToolsOverview, tools};
pub use transfer::{
    ChatExport, Export, ExportAttachment, ExportFormat, ExportMessage, MAX_IMPORTED_MESSAGES,
    export, import,
};

//! The HTML pages and htmx fragments, one module per resource. Every handler extracts, calls a
//! use case (`crate::chat`) and renders a template (`templates/`) or redirects; plain forms work
//! without JavaScript (a 303 back to the page), htmx gets a fragment.
pub mod account;
pub mod admin;
pub mod chats;
pub mod devices;
pub mod folders;
pub mod messages;
pub mod models;
pub mod profile;
pub mod search;
pub mod settings;
pub mod shares;
pub mod tools;
pub mod transfer;

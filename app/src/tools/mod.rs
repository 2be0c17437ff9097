//! Tools a reply may call (issue 32). So far the first piece of the built-in `fetch_url`: which
//! addresses it may reach (`addresses`), checked before any byte is sent, on every redirect and
//! for every address a name resolves to.
pub mod addresses;

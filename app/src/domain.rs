//! Values that are parsed once, at the edge, and trusted everywhere after: a session id, a
//! message's text, a chat title, a search query, a display name, a chat's settings. Each type
//! can only be made by its `parse`, which holds the rule and the message a person reads when the
//! input breaks it. The pages, the JSON API and imports all go through these.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};

/// Longest title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest search query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// A reply's text at most as an import brings it: what a reply is shown formatted at most.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// Largest `max_tokens` a chat may ask for.
pub const MAX_REPLY_TOKENS: i32 = 65_536;
/// Highest temperature a chat may ask for.
pub const MAX_TEMPERATURE: f32 = 2.0;

/// What an `interrupted` reply says about itself, whichever way the app went away (shut down,
/// restarted, crashed and found by a sweep).
pub const INTERRUPTED: &str =
    "The app restarted while this reply was being written. You can retry.";

/// A session's id: 128 random bits as 32 lowercase hex digits. Only [`SessionId::parse`] and
/// [`SessionId::random`] make one, so every id the store sees has that shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new random id.
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id in a cookie or token, if it has the shape of one.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message a person sends: not blank, within the size limit, storable.
#[derive(Clone, Debug)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(text: String, max_bytes: usize) -> AppResult<Self> {
        reject_nul(&text)?;
        if text.trim().is_empty() {
            return Err(AppError::Invalid(
                "Please write a message before sending.".into(),
            ));
        }
        if text.len() > max_bytes {
            return Err(AppError::TooLarge(format!(
                "That message is {}; the limit is {}. Please shorten it.",
                size(text.len()),
                size(max_bytes)
            )));
        }
        Ok(Self(text))
    }

    /// A message sent with files may be blank: the files are the message.
    pub fn parse_with_files(text: String, max_bytes: usize, has_files: bool) -> AppResult<Self> {
        if has_files && text.trim().is_empty() {
            return Ok(Self(String::new()));
        }
        Self::parse(text, max_bytes)
    }

    /// A chat's optional first message: blank means none.
    pub fn parse_optional(text: String, max_bytes: usize) -> AppResult<Option<Self>> {
        match text.trim().is_empty() {
            true => Ok(None),
            false => Self::parse(text, max_bytes).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name as typed, on one line with single spaces; blank, or longer than `max` characters, is
/// refused with a message about `what` ("a title", "a folder name").
fn one_line_name(raw: &str, max: usize, blank: &str, what: &str) -> AppResult<String> {
    reject_nul(raw)?;
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(AppError::Invalid(blank.into()));
    }
    if name.chars().count() > max {
        return Err(AppError::Invalid(format!(
            "Please use {what} of at most {max} characters."
        )));
    }
    Ok(name)
}

/// A chat title as typed: on one line with single spaces; blank or too long is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> AppResult<Self> {
        one_line_name(
            raw,
            MAX_TITLE_CHARS,
            "Please give the chat a title.",
            "a title",
        )
        .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest folder name, in characters.
pub const MAX_FOLDER_NAME_CHARS: usize = 60;
/// A session has at most this many folders (the sidebar lists them all).
pub const MAX_FOLDERS: u64 = 100;

/// A folder's name as typed: on one line with single spaces; blank or too long is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderName(String);

impl FolderName {
    pub fn parse(raw: &str) -> AppResult<Self> {
        one_line_name(
            raw,
            MAX_FOLDER_NAME_CHARS,
            "Please give the folder a name.",
            "a folder name",
        )
        .map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text to search for: trimmed, at most [`MAX_QUERY_CHARS`]; blank is no search at all.
#[derive(Clone, Debug)]
pub struct SearchQuery(String);

impl SearchQuery {
    pub fn parse(raw: &str) -> AppResult<Option<Self>> {
        reject_nul(raw)?;
        let query = raw.trim();
        if query.is_empty() {
            return Ok(None);
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(AppError::Invalid(format!(
                "Please search for at most {MAX_QUERY_CHARS} characters."
            )));
        }
        Ok(Some(Self(query.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name shown on a visitor's messages: one line, at most [`MAX_NAME_CHARS`]; blank is none.
#[derive(Clone, Debug)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> AppResult<Option<Self>> {
        reject_nul(raw)?;
        let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::Invalid(format!(
                "Please use a name of at most {MAX_NAME_CHARS} characters."
            )));
        }
        Ok((!name.is_empty()).then_some(Self(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A chat's own settings; `None` (JSON `null`) means the server's configured default, so changing
/// a default reaches every chat that never chose its own. This one type is the store's, the
/// API's body, the export's `settings`, and what the settings form parses into.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatSettings {
    /// The system prompt sent first.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Sampling temperature, 0–2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f32>,
    /// Upper bound on tokens per reply, 1–65536.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    pub max_tokens: Option<i32>,
    /// One of `GET /api/v1/models`.
    #[serde(default)]
    pub model: Option<String>,
    /// The tools its replies may call, by name (`GET /api/v1/tools`); `null`: all there are,
    /// also ones added later; `[]`: none.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// What a reply cost: the model that wrote it, its tokens, how long the first piece took and how
/// fast the rest came. Shown under the reply, and this one type is the API message body's
/// `stats` and the export's. Every field may be missing (an engine that does not count, a
/// reply that was stopped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplyStats {
    /// The model that wrote the reply.
    #[serde(default)]
    pub model: Option<String>,
    /// Tokens of the prompt the reply answered (system prompt and history).
    #[serde(default)]
    pub prompt_tokens: Option<i32>,
    #[serde(default)]
    pub completion_tokens: Option<i32>,
    /// From asking the model to its first piece of text, in milliseconds.
    #[serde(default)]
    pub time_to_first_token_ms: Option<i32>,
    /// From the model's first token to its last, in milliseconds.
    #[serde(default)]
    pub generation_ms: Option<i32>,
    /// Completion tokens a second (`completion_tokens` over `generation_ms`); derived, so an
    /// import ignores it.
    #[serde(default, skip_deserializing)]
    pub tokens_per_second: Option<f64>,
}

impl ReplyStats {
    /// `None` when nothing is known.
    pub fn new(
        model: Option<String>,
        prompt_tokens: Option<i32>,
        completion_tokens: Option<i32>,
        time_to_first_token_ms: Option<i32>,
        generation_ms: Option<i32>,
    ) -> Option<Self> {
        let tokens_per_second = match (completion_tokens, generation_ms) {
            (Some(tokens), Some(ms)) if tokens > 0 && ms > 0 => {
                Some((f64::from(tokens) * 1000.0 / f64::from(ms) * 10.0).round() / 10.0)
            }
            _ => None,
        };
        let stats = Self {
            model,
            prompt_tokens,
            completion_tokens,
            time_to_first_token_ms,
            generation_ms,
            tokens_per_second,
        };
        (stats != Self::default()).then_some(stats)
    }

    /// The stats as an import gives them: counts and durations that are not negative, a model
    /// name of sensible length, the rate worked out again.
    pub fn checked(self) -> Option<Self> {
        let count = |n: Option<i32>| n.filter(|n| *n >= 0);
        let model = self
            .model
            .filter(|m| !m.trim().is_empty() && m.chars().count() <= MAX_MODEL_NAME_CHARS);
        Self::new(
            model,
            count(self.prompt_tokens),
            count(self.completion_tokens),
            count(self.time_to_first_token_ms),
            count(self.generation_ms),
        )
    }
}

/// A call of a tool inside a reply, and what it gave: one of the reply's steps. The API's
/// `tool_calls`, the export's, and the JSON of the message's `tool_calls` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolStep {
    /// The call's id, as the model (or llama-server) named it.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments as the model wrote them (JSON, unless the model erred).
    pub arguments: String,
    /// Where in the reply's text the call was made, in bytes: the text before it was written
    /// before the call.
    #[serde(default)]
    pub at: usize,
    /// What the tool gave the model (`None` while it runs): its output, or why it failed.
    #[serde(default)]
    pub result: Option<String>,
    /// The result says why the call failed.
    #[serde(default)]
    pub is_error: bool,
    /// How long the call took, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// For a tool whose calls need the person's approval (its MCP server's `"approve": true`):
    /// waiting for it, or what they said. Absent for other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

/// What the person said to a call that needed their approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Not yet answered: the reply waits.
    Pending,
    Allowed,
    Denied,
}

impl ToolStep {
    /// The steps a message's column holds (none when empty or unreadable).
    pub fn parse_all(column: Option<&str>) -> Vec<ToolStep> {
        column
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }

    /// The column's value for these steps (`None` for none).
    pub fn column(steps: &[ToolStep]) -> Option<String> {
        (!steps.is_empty())
            .then(|| serde_json::to_string(steps).ok())
            .flatten()
    }
}

/// Longest model name kept with a reply (the column holds 200).
pub const MAX_MODEL_NAME_CHARS: usize = 200;

/// The settings form's fields as typed; blank means "the default".
#[derive(Debug, Default, Deserialize)]
pub struct SettingsFields {
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub temperature: String,
    #[serde(default)]
    pub max_tokens: String,
    #[serde(default)]
    pub model: String,
    /// The tools the form listed, comma-separated: the ticked ones (`tool:NAME`) are the
    /// choice, all of them ticked meaning all (also tools added later). Absent: all.
    #[serde(default)]
    pub tools_listed: Option<String>,
    /// The ticked tools, `tool:NAME=on`.
    #[serde(flatten)]
    pub ticked: std::collections::HashMap<String, String>,
}

/// Most tools a chat's settings name, and the longest name.
pub const MAX_CHAT_TOOLS: usize = 128;
const MAX_TOOL_NAME_BYTES: usize = 128;

impl ChatSettings {
    /// The store's column for `tools`: JSON names, `None` for all.
    pub fn tools_column(&self) -> Option<String> {
        self.tools
            .as_ref()
            .and_then(|names| serde_json::to_string(names).ok())
    }

    /// Whether a tool of this name is one the chat's replies may call.
    pub fn allows_tool(&self, name: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// The settings form's text fields, read as settings (then [`Self::check`]ed like any).
    pub fn from_fields(fields: SettingsFields) -> AppResult<Self> {
        let blank_to_none = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let temperature = blank_to_none(fields.temperature)
            .map(|t| {
                t.replace(',', ".").parse::<f32>().map_err(|_| {
                    AppError::Invalid(format!(
                        "The temperature must be a number from 0 to {MAX_TEMPERATURE}, not “{t}”."
                    ))
                })
            })
            .transpose()?;
        let max_tokens = blank_to_none(fields.max_tokens)
            .map(|n| {
                n.parse::<i32>().map_err(|_| {
                    AppError::Invalid(format!(
                        "Max tokens must be a whole number from 1 to {MAX_REPLY_TOKENS}, not “{n}”."
                    ))
                })
            })
            .transpose()?;
        // Every tool listed and ticked is "all" (tools added later too); else the ticked ones.
        let tools = fields.tools_listed.map(|listed| {
            let listed: Vec<&str> = listed.split(',').filter(|n| !n.is_empty()).collect();
            let ticked: Vec<String> = listed
                .iter()
                .filter(|name| fields.ticked.contains_key(&format!("tool:{name}")))
                .map(|name| (*name).to_owned())
                .collect();
            (ticked.len() < listed.len()).then_some(ticked)
        });
        Ok(Self {
            system_prompt: Some(fields.system_prompt),
            temperature,
            max_tokens,
            model: blank_to_none(fields.model),
            tools: tools.flatten(),
        })
    }

    /// The settings as they will be stored: blanks are defaults, a prompt trimmed and within
    /// `max_prompt_bytes`, numbers in range. Whether the model is served is the engine's to say
    /// (`chat::settings`).
    pub fn check(mut self, max_prompt_bytes: usize) -> AppResult<Self> {
        self.system_prompt = self
            .system_prompt
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().to_owned());
        if let Some(prompt) = &self.system_prompt {
            reject_nul(prompt)?;
            if prompt.len() > max_prompt_bytes {
                return Err(AppError::TooLarge(format!(
                    "That system prompt is {}; the limit is {}. Please shorten it.",
                    size(prompt.len()),
                    size(max_prompt_bytes)
                )));
            }
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&t))
        {
            return Err(AppError::Invalid(format!(
                "The temperature must be a number from 0 to {MAX_TEMPERATURE}."
            )));
        }
        if let Some(n) = self.max_tokens
            && !(1..=MAX_REPLY_TOKENS).contains(&n)
        {
            return Err(AppError::Invalid(format!(
                "Max tokens must be a whole number from 1 to {MAX_REPLY_TOKENS}."
            )));
        }
        self.model = self.model.filter(|m| !m.trim().is_empty());
        if let Some(names) = &mut self.tools {
            if names.len() > MAX_CHAT_TOOLS {
                return Err(AppError::Invalid(format!(
                    "A chat's settings may name at most {MAX_CHAT_TOOLS} tools."
                )));
            }
            for name in names.iter() {
                reject_nul(name)?;
                if name.is_empty() || name.len() > MAX_TOOL_NAME_BYTES {
                    return Err(AppError::Invalid(format!(
                        "A tool's name has 1 to {MAX_TOOL_NAME_BYTES} bytes."
                    )));
                }
            }
            names.sort();
            names.dedup();
        }
        Ok(self)
    }

    /// Whether any setting differs from the defaults.
    pub fn is_customised(&self) -> bool {
        self != &Self::default()
    }
}

/// Refuses text with NUL characters, which no database column can store.
pub fn reject_nul(text: &str) -> AppResult<()> {
    if text.contains('\0') {
        return Err(AppError::Invalid(
            "That text contains a NUL character, which cannot be saved. Please remove it.".into(),
        ));
    }
    Ok(())
}

/// A size as people read it: bytes below 1 KiB, else whole KiB (rounded so that "over the limit"
/// never reads as equal to it).
/// A duration as people say it, in its largest whole unit: "24 hours", "2 days", "90 seconds".
pub fn duration_words(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let (n, unit) = match seconds {
        s if s >= 86_400 && s.is_multiple_of(86_400) && s / 86_400 != 1 => (s / 86_400, "day"),
        s if s >= 3_600 && s.is_multiple_of(3_600) => (s / 3_600, "hour"),
        s if s >= 60 && s.is_multiple_of(60) => (s / 60, "minute"),
        s => (s, "second"),
    };
    match n {
        1 => format!("1 {unit}"),
        n => format!("{n} {unit}s"),
    }
}

pub fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    const GIB: usize = 1024 * MIB;
    if bytes >= GIB {
        return format!("{:.1} GiB", bytes as f64 / GIB as f64);
    }
    if bytes >= MIB {
        return if bytes.is_multiple_of(MIB) {
            format!("{} MiB", bytes / MIB)
        } else {
            format!("{:.1} MiB", bytes as f64 / MIB as f64)
        };
    }
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The UTC day of `at`, as usage is counted: `YYYY-MM-DD`.
pub fn utc_day(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// How long from `now` until the next UTC day begins (when daily quotas reset).
pub fn until_next_day(now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    let tomorrow = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc());
    tomorrow
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(std::time::Duration::from_secs(86_400))
        .max(std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        use std::time::Duration;
        assert_eq!(duration_words(Duration::from_secs(86_400)), "24 hours");
        assert_eq!(duration_words(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(duration_words(Duration::from_secs(3_600)), "1 hour");
        assert_eq!(duration_words(Duration::from_secs(90)), "90 seconds");
        assert_eq!(duration_words(Duration::from_secs(120)), "2 minutes");
    }

    #[test]
    fn session_ids_are_128_bit_hex() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(id, SessionId::random());
        assert_eq!(SessionId::parse("../etc"), None);
        assert_eq!(SessionId::parse(&"A".repeat(32)), None);
    }

    #[test]
    fn messages_are_not_blank_not_too_large_and_storable() {
        assert!(MessageText::parse("hi".into(), 10).is_ok());
        assert!(matches!(
            MessageText::parse("  \n".into(), 10),
            Err(AppError::Invalid(_))
        ));
        assert!(matches!(
            MessageText::parse("x".repeat(11), 10),
            Err(AppError::TooLarge(m)) if m.contains("11 bytes") && m.contains("10 bytes")
        ));
        assert!(MessageText::parse("a\0b".into(), 10).is_err());
        assert!(
            MessageText::parse_optional(" ".into(), 10)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn titles_names_and_queries_are_single_lines_within_limits() {
        assert_eq!(Title::parse("  a \n b ").unwrap().as_str(), "a b");
        assert!(Title::parse(" ").is_err());
        assert!(Title::parse(&"t".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert_eq!(
            DisplayName::parse(" Ada   Lovelace ")
                .unwrap()
                .unwrap()
                .as_str(),
            "Ada Lovelace"
        );
        assert!(DisplayName::parse("").unwrap().is_none());
        assert!(DisplayName::parse(&"n".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(SearchQuery::parse(" x ").unwrap().unwrap().as_str(), "x");
        assert!(SearchQuery::parse("  ").unwrap().is_none());
        assert!(SearchQuery::parse(&"q".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }

    #[test]
    fn settings_from_the_form_are_checked_like_any() {
        let fields = SettingsFields {
            system_prompt: "  be brief ".into(),
            temperature: "0,5".into(),
            max_tokens: "".into(),
            model: " ".into(),
            ..Default::default()
        };
        let settings = ChatSettings::from_fields(fields)
            .unwrap()
            .check(100)
            .unwrap();
        assert_eq!(
            settings,
            ChatSettings {
                system_prompt: Some("be brief".into()),
                temperature: Some(0.5),
                max_tokens: None,
                model: None,
                tools: None,
            }
        );
        assert!(settings.is_customised());
        assert!(!ChatSettings::default().is_customised());
        let hot = ChatSettings {
            temperature: Some(2.5),
            ..Default::default()
        };
        assert!(hot.check(100).is_err());
        let many = ChatSettings {
            max_tokens: Some(0),
            ..Default::default()
        };
        assert!(many.check(100).is_err());
        let nan = SettingsFields {
            temperature: "warm".into(),
            ..Default::default()
        };
        assert!(ChatSettings::from_fields(nan).is_err());
    }

    #[test]
    fn the_forms_ticked_tools_are_the_choice_and_all_ticked_is_all() {
        let form = |ticked: &[&str]| SettingsFields {
            tools_listed: Some("fetch_url,web_search,time_now".into()),
            ticked: ticked
                .iter()
                .map(|t| (format!("tool:{t}"), "on".to_owned()))
                .collect(),
            ..Default::default()
        };
        let read = |ticked: &[&str]| {
            ChatSettings::from_fields(form(ticked))
                .unwrap()
                .check(100)
                .unwrap()
                .tools
        };
        assert_eq!(
            read(&["web_search", "fetch_url"]),
            Some(vec!["fetch_url".into(), "web_search".into()])
        );
        assert_eq!(read(&[]), Some(vec![]));
        assert_eq!(read(&["fetch_url", "web_search", "time_now"]), None);
        // A tick for a tool the form did not list is not a choice.
        assert_eq!(read(&["rm_rf"]), Some(vec![]));
        let chosen = ChatSettings {
            tools: Some(vec!["fetch_url".into()]),
            ..Default::default()
        };
        assert!(chosen.allows_tool("fetch_url") && !chosen.allows_tool("web_search"));
        assert!(ChatSettings::default().allows_tool("anything"));
        let long = ChatSettings {
            tools: Some(vec!["x".repeat(200)]),
            ..Default::default()
        };
        assert!(long.check(100).is_err());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(2048), "2 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(4_683_072_000), "4.4 GiB");
    }

    #[test]
    fn quotas_reset_at_the_next_utc_midnight() {
        use chrono::{DateTime, Utc};
        use std::time::Duration;
        let now = DateTime::parse_from_rfc3339("2026-12-07T23:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_next_day(now), Duration::from_secs(3600));
        assert_eq!(utc_day(now), "2026-12-07");
        let midnight = DateTime::parse_from_rfc3339("2026-12-31T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(until_next_day(midnight), Duration::from_secs(86_400));
    }
}

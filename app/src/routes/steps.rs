//! A reply's steps (its calls of tools) as the page shows them: the tool, its arguments, a
//! spinner while it runs, then its result folded, as escaped text (the template escapes it),
//! long results cut with the rest a click away, and how long it took. Finished pages and the
//! stream's `tool_call`/`tool_result` events render the same fragment.
use serde::Serialize;

use crate::domain::{Approval, ToolStep};

/// Characters of a result shown before "Show all".
const PREVIEW_CHARS: usize = 1_500;

#[derive(Serialize, Clone, Debug)]
pub struct ToolStepView {
    pub id: String,
    pub name: String,
    /// The arguments, pretty-printed when they are JSON.
    pub arguments: String,
    pub running: bool,
    pub is_error: bool,
    /// The result's start (all of it when short).
    pub preview: Option<String>,
    /// The rest, when the result is longer than the preview.
    pub rest: Option<String>,
    pub size: Option<String>,
    pub duration: Option<String>,
    /// Waits for the person to allow or deny it: where the answer is posted.
    pub approval_action: Option<String>,
    /// The person denied it.
    pub denied: bool,
}

impl ToolStepView {
    pub fn new(step: &ToolStep) -> Self {
        let arguments = serde_json::from_str::<serde_json::Value>(&step.arguments)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| step.arguments.clone());
        let (preview, rest) = match &step.result {
            None => (None, None),
            Some(result) => match result.char_indices().nth(PREVIEW_CHARS) {
                Some((cut, _)) => (
                    Some(result[..cut].to_owned()),
                    Some(result[cut..].to_owned()),
                ),
                None => (Some(result.clone()), None),
            },
        };
        Self {
            id: step.id.clone(),
            name: step.name.clone(),
            arguments,
            running: step.result.is_none(),
            is_error: step.is_error,
            preview,
            rest,
            size: step.result.as_ref().map(|r| crate::domain::size(r.len())),
            approval_action: None,
            denied: step.approval == Some(Approval::Denied),
            duration: step.duration_ms.map(|ms| match ms {
                0..1_000 => format!("{ms} ms"),
                _ => format!("{:.1} s", ms as f64 / 1000.0),
            }),
        }
    }

    /// The steps of a reply; `reply` (`/chats/{id}/messages/{message_id}`) where the person
    /// answers the calls that wait for approval (a shared link's: `None`, no forms).
    pub fn all(steps: &[ToolStep], reply: Option<&str>) -> Vec<Self> {
        steps
            .iter()
            .map(|step| Self {
                approval_action: reply
                    .filter(|_| step.approval == Some(Approval::Pending))
                    .map(|reply| format!("{reply}/tool_calls/{}", step.id)),
                ..Self::new(step)
            })
            .collect()
    }
}

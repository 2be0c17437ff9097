//! A reply's calls of tools: each becomes a step of the reply (saved at once, so a reload or
//! another replica sees it running), the calls of one round run at once, and their results go
//! back to the model, fenced as data, for its next round.
use std::collections::HashSet;

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::time::Instant;

use super::{Inner, Reply};
use crate::{
    domain::ToolStep,
    lm::{PromptMessage, ToolCall},
    store::Status,
    tools::fenced,
};

/// Runs the calls the model asked for in this round, and adds the round to `prompt`: the
/// model's turn with its calls, then each call's result.
pub(super) async fn run_calls(
    inner: &Inner,
    reply: &Reply,
    prompt: &mut Vec<PromptMessage>,
    round_text: String,
    calls: Vec<ToolCall>,
) {
    let calls = with_unique_ids(&reply.steps(), calls);
    let first = reply.state.borrow().steps.len();
    reply.state.send_modify(|s| {
        let at = s.text.len();
        s.steps.extend(calls.iter().map(|call| ToolStep {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            at,
            result: None,
            is_error: false,
            duration_ms: None,
        }));
    });
    reply.checkpoint(&inner.store).await;
    let mut running: FuturesUnordered<_> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| async move {
            let started = Instant::now();
            let output = inner.tools.call(call).await;
            (i, output, started.elapsed())
        })
        .collect();
    let mut results = vec![None; calls.len()];
    while let Some((i, output, took)) = running.next().await {
        tracing::info!(
            tool = %calls[i].name,
            is_error = output.is_error,
            bytes = output.text.len(),
            ms = took.as_millis() as u64,
            "tool call"
        );
        reply.state.send_modify(|s| {
            if let Some(step) = s.steps.get_mut(first + i) {
                step.result = Some(output.text.clone());
                step.is_error = output.is_error;
                step.duration_ms = Some(took.as_millis() as u64);
            }
        });
        reply.checkpoint(&inner.store).await;
        results[i] = Some(output);
    }
    drop(running);
    prompt.push(PromptMessage {
        role: "assistant",
        content: round_text,
        images: Vec::new(),
        tool_calls: calls.clone(),
        tool_call_id: None,
    });
    for (call, output) in calls.into_iter().zip(results) {
        let Some(output) = output else { continue };
        prompt.push(PromptMessage {
            role: "tool",
            content: fenced(&call.name, &output),
            images: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id),
        });
    }
}

/// Each call with an id no step of the reply has: the page, the API and the model's next
/// prompt tell calls apart by it, and a model may repeat one.
fn with_unique_ids(steps: &[ToolStep], calls: Vec<ToolCall>) -> Vec<ToolCall> {
    let mut taken: HashSet<String> = steps.iter().map(|s| s.id.clone()).collect();
    calls
        .into_iter()
        .map(|mut call| {
            let mut n = 2;
            let base = call.id.clone();
            while !taken.insert(call.id.clone()) {
                call.id = format!("{base}-{n}");
                n += 1;
            }
            call
        })
        .collect()
}

/// Steps still running when the reply ended (Stop, a failure, shutdown) are marked, so no
/// saved step is left spinning.
pub(super) fn end_running_steps(reply: &Reply, status: Status) {
    let why = match status {
        Status::Stopped => "Stopped before the call finished.",
        _ => "The reply ended before the call finished.",
    };
    reply.state.send_if_modified(|s| {
        let mut changed = false;
        for step in s.steps.iter_mut().filter(|step| step.result.is_none()) {
            step.result = Some(why.into());
            step.is_error = true;
            changed = true;
        }
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_call_ids_are_told_apart() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "fetch_url".into(),
            arguments: "{}".into(),
        };
        let earlier = ToolStep {
            id: "a".into(),
            name: "fetch_url".into(),
            arguments: "{}".into(),
            at: 0,
            result: Some("ok".into()),
            is_error: false,
            duration_ms: Some(1),
        };
        let ids: Vec<String> = with_unique_ids(&[earlier], vec![call("a"), call("b"), call("b")])
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["a-2", "b", "b-2"]);
    }
}

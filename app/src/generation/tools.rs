//! A reply's calls of tools: each becomes a step of the reply (saved at once, so a reload or
//! another replica sees it running), the calls of one round run at once, and their results go
//! back to the model, fenced as data, for its next round.
use std::{collections::HashSet, time::Duration};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::time::Instant;

use super::{Inner, Reply};
use crate::{
    domain::{Approval, ToolStep},
    lm::{PromptMessage, ToolCall},
    store::Status,
    tools::{ToolOutput, fenced},
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
        s.steps.extend(calls.iter().map(|call| {
            ToolStep {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                at,
                result: None,
                is_error: false,
                duration_ms: None,
                approval: inner
                    .tools
                    .needs_approval(&call.name)
                    .then_some(Approval::Pending),
            }
        }));
    });
    reply.checkpoint(&inner.store).await;
    wait_for_approvals(inner, reply, first..first + calls.len()).await;
    let approvals: Vec<Option<Approval>> = {
        let state = reply.state.borrow();
        (first..first + calls.len())
            .map(|i| state.steps.get(i).and_then(|s| s.approval))
            .collect()
    };
    let mut running: FuturesUnordered<_> = calls
        .iter()
        .zip(approvals)
        .enumerate()
        .map(|(i, (call, approval))| async move {
            let started = Instant::now();
            let output = match approval {
                Some(Approval::Denied) => ToolOutput {
                    text: DENIED.into(),
                    is_error: true,
                },
                _ => inner.tools.call(call).await,
            };
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

/// What the model is told of a call the person denied.
const DENIED: &str = "The person denied this call; it was not made.";
/// Longest a reply waits for the person to allow or deny a call; then it is denied.
const APPROVAL_WAIT: Duration = Duration::from_secs(600);
/// How often the row is read for a decision made on another replica.
const APPROVAL_POLL: Duration = Duration::from_millis(500);

/// Waits until every step in `range` that needs approval has it (or a denial): told here at
/// once (`Reply::decide`), or read from the row when another replica took the decision.
async fn wait_for_approvals(inner: &Inner, reply: &Reply, range: std::ops::Range<usize>) {
    let pending = |reply: &Reply| {
        reply.state.borrow().steps[range.clone()]
            .iter()
            .any(|s| s.approval == Some(Approval::Pending))
    };
    let give_up = Instant::now() + APPROVAL_WAIT;
    while pending(reply) {
        if Instant::now() >= give_up {
            reply.state.send_modify(|s| {
                for step in &mut s.steps[range.clone()] {
                    if step.approval == Some(Approval::Pending) {
                        step.approval = Some(Approval::Denied);
                    }
                }
            });
            break;
        }
        tokio::select! {
            _ = reply.decided.notified() => {}
            _ = tokio::time::sleep(APPROVAL_POLL) => {}
        }
        // Decisions are in the row (whichever replica took them).
        match inner
            .store
            .find_message(&reply.session_id, reply.chat_id, reply.message_id)
            .await
        {
            Ok(Some(row)) => {
                let decided = row.tool_steps();
                reply.state.send_modify(|s| {
                    for step in &mut s.steps[range.clone()] {
                        if step.approval != Some(Approval::Pending) {
                            continue;
                        }
                        if let Some(approval) = decided
                            .iter()
                            .find(|d| d.id == step.id)
                            .and_then(|d| d.approval)
                            .filter(|a| *a != Approval::Pending)
                        {
                            step.approval = Some(approval);
                        }
                    }
                });
            }
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "reading a reply's approvals"),
        }
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
            approval: None,
        };
        let ids: Vec<String> = with_unique_ids(&[earlier], vec![call("a"), call("b"), call("b")])
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["a-2", "b", "b-2"]);
    }
}

//! The engine's thread: continuous batching over one llama.cpp context. Each step decodes one
//! batch holding the next token of every reply being generated plus chunks of prompts waiting
//! to be evaluated, so a new prompt joins while other replies stream. A sequence (slot) keeps
//! the tokens of its last reply in its KV cache: the next request that starts with them (the
//! same chat's next turn) evaluates only what is new. A reply whose stream was dropped (Stop, a
//! lapsed lease, shutdown) is cancelled before the next step.
use std::{
    collections::VecDeque,
    sync::{PoisonError, mpsc},
    time::Instant,
};

use llama_cpp_2::{
    context::LlamaContext, llama_batch::LlamaBatch, model::LlamaModel, sampling::LlamaSampler,
    token::LlamaToken,
};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    common_prefix,
    stops::StopFilter,
    vision::{MediaPrefix, Projector},
};
use crate::lm::{LmError, LmEvent, Timings, Usage};

/// Where a reply's events go.
pub type EventSender = UnboundedSender<Result<Vec<LmEvent>, LmError>>;

/// One reply to generate.
pub struct Request {
    /// The prompt, templated and tokenized (an image as its stand-in tokens, `vision`).
    pub tokens: Vec<LlamaToken>,
    /// With images: the prompt up to its last image, evaluated through the projector when the
    /// reply starts, unless the sequence's cache holds all of it already.
    pub media: Option<MediaPrefix>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    /// The template's markers the model may write as text (`stops`): the reply ends there.
    pub stops: &'static [&'static str],
    /// With tools offered: how the model's calls are found and held to their form.
    pub calls: Option<ToolCalling>,
    pub events: EventSender,
    /// Held until the reply ends: while any is, the model is not unloaded.
    pub _in_use: std::sync::Arc<()>,
}

/// A reply that may call tools: its text goes through the filter (a call is held back and
/// parsed at the end), and once a call's marker is written the grammar constrains sampling.
pub struct ToolCalling {
    pub filter: super::tool_calls::CallFilter,
    /// GBNF for what follows the marker; `None`: the format has no marker to start it.
    pub grammar: Option<String>,
    /// The marker, when it is one token: rendered as text even if it is a control token.
    pub marker_token: Option<LlamaToken>,
}

#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
}

/// A sequence of the context.
struct Slot {
    id: i32,
    /// The tokens in this sequence's KV cache while it is idle (a prefix the next request may
    /// reuse).
    cached: Vec<LlamaToken>,
    active: Option<Active>,
}

/// A reply being generated in a slot.
struct Active {
    request: Request,
    sampler: LlamaSampler,
    /// Tokens in the KV cache: the prompt as far as evaluated, then the reply's tokens.
    in_kv: Vec<LlamaToken>,
    /// Prompt tokens found in the cache, not evaluated again.
    reused: usize,
    /// The token sampled last, to be decoded in the next step.
    next: Option<LlamaToken>,
    generated: u32,
    text: Utf8Decoder,
    /// The text after decoding, cut at the first stop string.
    stops: StopFilter,
    started: Instant,
    first_token_at: Option<Instant>,
}

impl Active {
    fn prompt_done(&self) -> bool {
        self.in_kv.len() >= self.request.tokens.len()
    }

    fn send(&self, events: Vec<LmEvent>) {
        // A closed channel is noticed before the next step.
        let _ = self.request.events.send(Ok(events));
    }
}

pub struct Worker<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    slots: Vec<Slot>,
    queue: VecDeque<Request>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_ctx_seq: u32,
    /// The model's vision projector, if it has one.
    vision: Option<Projector>,
}

/// What a slot put in the batch this step.
struct Scheduled {
    slot: usize,
    tokens: Vec<LlamaToken>,
    /// The batch index whose logits this slot samples from, if any.
    logits_at: Option<i32>,
}

impl<'m> Worker<'m> {
    pub fn new(
        model: &'m LlamaModel,
        context: LlamaContext<'m>,
        slots: usize,
        n_batch: usize,
        n_ctx_seq: u32,
        vision: Option<Projector>,
    ) -> Self {
        let n_batch = n_batch.max(slots);
        Self {
            model,
            context,
            slots: (0..slots)
                .map(|id| Slot {
                    id: id as i32,
                    cached: Vec::new(),
                    active: None,
                })
                .collect(),
            queue: VecDeque::new(),
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            n_ctx_seq,
            vision,
        }
    }

    /// Serves requests until every sender is gone and the last reply has ended.
    pub fn run(mut self, inbox: mpsc::Receiver<Request>) {
        loop {
            let busy = !self.queue.is_empty() || self.slots.iter().any(|s| s.active.is_some());
            if !busy {
                match inbox.recv() {
                    Ok(request) => self.queue.push_back(request),
                    Err(_) => return,
                }
            }
            while let Ok(request) = inbox.try_recv() {
                self.queue.push_back(request);
            }
            self.drop_cancelled();
            self.admit();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
        }
    }

    /// Replies whose stream was dropped end here: their slot is free for the next request.
    fn drop_cancelled(&mut self) {
        self.queue.retain(|r| !r.events.is_closed());
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.request.events.is_closed())
                && let Some(active) = slot.active.take()
            {
                slot.cached = active.in_kv;
            }
        }
    }

    /// Waiting requests into free slots, each into the one whose cache shares most of its prompt.
    fn admit(&mut self) {
        while !self.queue.is_empty() {
            let Some(index) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active.is_none())
                .max_by_key(|(_, s)| common_prefix(&s.cached, &self.queue[0].tokens))
                .map(|(i, _)| i)
            else {
                return;
            };
            let Some(request) = self.queue.pop_front() else {
                return;
            };
            let slot = &mut self.slots[index];
            // At least the last prompt token is evaluated: its logits give the first token.
            let mut reuse =
                common_prefix(&slot.cached, &request.tokens).min(request.tokens.len() - 1);
            if reuse < slot.cached.len() {
                let trimmed =
                    self.context
                        .clear_kv_cache_seq(Some(slot.id as u32), Some(reuse as u32), None);
                if trimmed != Ok(true) {
                    // Some caches cannot drop a tail: start this sequence afresh.
                    let _ = self
                        .context
                        .clear_kv_cache_seq(Some(slot.id as u32), None, None);
                    reuse = 0;
                }
            }
            let started = Instant::now();
            let mut in_kv = std::mem::take(&mut slot.cached);
            in_kv.truncate(reuse);
            if let Some(media) = request.media.as_ref().filter(|m| reuse < m.len) {
                // Images not all in the cache: the sequence is evaluated afresh up to the last
                // one, at once (the other replies wait for it, as in llama-server).
                let _ = self
                    .context
                    .clear_kv_cache_seq(Some(slot.id as u32), None, None);
                reuse = 0;
                in_kv.clear();
                let evaluated = match &self.vision {
                    Some(projector) => media
                        .chunks
                        .eval_chunks(
                            &mut projector.lock().unwrap_or_else(PoisonError::into_inner),
                            &mut self.context,
                            0,
                            slot.id,
                            i32::try_from(self.n_batch).unwrap_or(i32::MAX),
                            false,
                        )
                        .map_err(|e| format!("the images could not be evaluated ({e})")),
                    None => Err("this model takes no images".to_owned()),
                };
                match evaluated {
                    Ok(n_past) if usize::try_from(n_past).ok() == Some(media.len) => {
                        in_kv.extend_from_slice(&request.tokens[..media.len]);
                    }
                    outcome => {
                        let message = outcome
                            .map(|n| format!("the images took {n} positions, not {}", media.len))
                            .unwrap_or_else(|e| e);
                        tracing::error!("{message}");
                        let _ = request.events.send(Err(LmError::Engine(message)));
                        let _ = self
                            .context
                            .clear_kv_cache_seq(Some(slot.id as u32), None, None);
                        continue;
                    }
                }
            }
            slot.active = Some(Active {
                sampler: sampler(request.sampling),
                in_kv,
                reused: reuse,
                next: None,
                generated: 0,
                text: Utf8Decoder::default(),
                stops: StopFilter::new(request.stops),
                started,
                first_token_at: None,
                request,
            });
        }
    }

    /// One decode: the next token of each generating reply, then prompt chunks as room allows.
    fn step(&mut self) {
        self.batch.clear();
        let mut scheduled: Vec<Scheduled> = Vec::new();
        let mut room = self.n_batch;
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(active) = &slot.active
                && let Some(token) = active.next
            {
                scheduled.push(Scheduled {
                    slot: index,
                    tokens: vec![token],
                    logits_at: None,
                });
                room -= 1;
            }
        }
        for (index, slot) in self.slots.iter().enumerate() {
            if room == 0 {
                break;
            }
            if let Some(active) = &slot.active
                && !active.prompt_done()
            {
                let from = active.in_kv.len();
                let to = active.request.tokens.len().min(from + room);
                scheduled.push(Scheduled {
                    slot: index,
                    tokens: active.request.tokens[from..to].to_vec(),
                    logits_at: None,
                });
                room -= to - from;
            }
        }
        for entry in &mut scheduled {
            let slot = &self.slots[entry.slot];
            let Some(active) = &slot.active else { continue };
            let start = active.in_kv.len();
            // Logits where a token gets sampled: a reply's next token, or a prompt's last one.
            let wants_logits =
                active.prompt_done() || start + entry.tokens.len() == active.request.tokens.len();
            for (offset, token) in entry.tokens.iter().enumerate() {
                let last = offset + 1 == entry.tokens.len();
                let logits = last && wants_logits;
                if logits {
                    entry.logits_at = Some(self.batch.n_tokens());
                }
                if let Err(e) = self
                    .batch
                    .add(*token, (start + offset) as i32, &[slot.id], logits)
                {
                    tracing::error!(error = %e, "the batch is full; this should not happen");
                    entry.logits_at = None;
                }
            }
        }
        if let Err(e) = self.context.decode(&mut self.batch) {
            tracing::error!(error = %e, "llama.cpp could not decode a batch");
            for entry in &scheduled {
                self.fail(entry.slot, format!("decoding failed ({e})"));
            }
            return;
        }
        let now = Instant::now();
        for entry in scheduled {
            if let Some((index, reason)) = self.advance(entry, now) {
                self.finish(index, reason);
            }
        }
    }

    /// After a decode: records what a slot evaluated and, where it has logits, samples its
    /// next token and sends its text. Returns the slot and the finish reason when it ended.
    fn advance(&mut self, entry: Scheduled, now: Instant) -> Option<(usize, &'static str)> {
        let n_ctx_seq = self.n_ctx_seq as usize;
        let vocab = self.model.vocab();
        let active = self.slots[entry.slot].active.as_mut()?;
        active.next = None;
        active.in_kv.extend_from_slice(&entry.tokens);
        let at = entry.logits_at?;
        let token = active.sampler.sample(&self.context, at);
        active.first_token_at.get_or_insert(now);
        if vocab.is_eog(token) {
            return Some((entry.slot, "stop"));
        }
        // Control tokens render as nothing: template markup never reaches a reply (but for a
        // call's marker, which the call filter takes out).
        let marker = active.request.calls.as_ref().and_then(|c| c.marker_token);
        let piece = vocab.token_to_piece(token, marker == Some(token), None);
        let (mut text, stopped) = active.stops.push(&active.text.push(&piece));
        if let Some(calls) = active.request.calls.as_mut() {
            let filtered = calls.filter.push(&text);
            text = filtered.text;
            if filtered.call_began
                && let Some(grammar) = calls.grammar.as_deref()
            {
                match constrained(self.model, active.request.sampling, grammar) {
                    Some(sampler) => active.sampler = sampler,
                    None => tracing::warn!(
                        "the tool-call grammar did not load; the call is not constrained"
                    ),
                }
            }
        }
        if !text.is_empty() {
            active.send(vec![LmEvent::Text(text)]);
        }
        active.generated += 1;
        if stopped {
            return Some((entry.slot, "stop"));
        }
        if active.generated >= active.request.max_tokens || active.in_kv.len() + 1 >= n_ctx_seq {
            return Some((entry.slot, "length"));
        }
        active.next = Some(token);
        None
    }

    /// A reply's end: the rest of its text, the finish reason, usage and timings, as
    /// llama-server reports them. The slot keeps its tokens for the next turn.
    fn finish(&mut self, index: usize, reason: &str) {
        let slot = &mut self.slots[index];
        let Some(mut active) = slot.active.take() else {
            return;
        };
        let now = Instant::now();
        let first = active.first_token_at.unwrap_or(now);
        let n_prompt = active.request.tokens.len() as u32;
        let mut events = Vec::with_capacity(4);
        let (mut rest, _) = active.stops.push(&active.text.finish());
        rest.push_str(&active.stops.finish());
        let mut calls = Vec::new();
        if let Some(calling) = active.request.calls.as_mut() {
            rest = calling.filter.push(&rest).text;
            let (held, found) = calling.filter.finish();
            rest.push_str(&held);
            calls = found;
        }
        if !rest.is_empty() {
            events.push(LmEvent::Text(rest));
        }
        let reason = if calls.is_empty() {
            reason
        } else {
            "tool_calls"
        };
        if !calls.is_empty() {
            events.push(LmEvent::ToolCalls(calls));
        }
        events.push(LmEvent::Finish(reason.to_owned()));
        events.push(LmEvent::Usage(Usage {
            prompt_tokens: n_prompt,
            completion_tokens: active.generated,
        }));
        events.push(LmEvent::Timings(Timings {
            cache_n: active.reused as u32,
            prompt_n: n_prompt - active.reused as u32,
            prompt_ms: (first - active.started).as_secs_f64() * 1000.0,
            predicted_n: active.generated,
            predicted_ms: (now - first).as_secs_f64() * 1000.0,
        }));
        active.send(events);
        slot.cached = active.in_kv;
    }

    /// A reply that cannot go on: its stream ends with the error and its sequence is emptied.
    fn fail(&mut self, index: usize, message: String) {
        let slot = &mut self.slots[index];
        if let Some(active) = slot.active.take() {
            let _ = active.request.events.send(Err(LmError::Engine(message)));
        }
        slot.cached.clear();
        let _ = self
            .context
            .clear_kv_cache_seq(Some(slot.id as u32), None, None);
    }
}

/// llama-server's default order of samplers, with the chat's temperature and top-p; greedy at
/// temperature 0.
fn sampler(sampling: Sampling) -> LlamaSampler {
    LlamaSampler::chain_simple(samplers(sampling))
}

fn samplers(sampling: Sampling) -> Vec<LlamaSampler> {
    if sampling.temperature <= 0.0 {
        return vec![LlamaSampler::greedy()];
    }
    vec![
        LlamaSampler::top_k(40),
        LlamaSampler::top_p(sampling.top_p, 1),
        LlamaSampler::min_p(0.05, 1),
        LlamaSampler::temp(sampling.temperature),
        LlamaSampler::dist(sampling.seed),
    ]
}

/// [`sampler`] behind a grammar (GBNF, from its rule `root`): only tokens it allows are drawn.
/// It applies from its first token, so nothing is fed to it that it could refuse (llama.cpp
/// throws, through the C API, on a refused piece: its own lazy triggers risk that when a token
/// straddles the trigger's end, so the worker starts the grammar itself, at a token boundary).
fn constrained(model: &LlamaModel, sampling: Sampling, grammar: &str) -> Option<LlamaSampler> {
    let grammar = LlamaSampler::grammar(model, grammar, "root").ok()?;
    let mut chain = vec![grammar];
    chain.extend(samplers(sampling));
    Some(LlamaSampler::chain_simple(chain))
}

/// Token pieces are bytes, and a character may be split across tokens: whole characters go
/// out, an incomplete one waits for the next piece, invalid bytes become U+FFFD.
#[derive(Default)]
pub struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.carry) {
                Ok(text) => {
                    out.push_str(text);
                    self.carry.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.carry[..valid]));
                    match e.error_len() {
                        // An incomplete character at the end: wait for its other bytes.
                        None => {
                            self.carry.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.carry.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of a reply (an incomplete character shows as U+FFFD).
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.carry).into_owned();
        self.carry.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Decoder;

    #[test]
    fn characters_split_across_pieces_come_out_whole() {
        let text = "héllo, 世界 🎉!";
        let bytes = text.as_bytes();
        // Every way of cutting the text in two, and byte by byte.
        for cut in 0..=bytes.len() {
            let mut decoder = Utf8Decoder::default();
            let mut out = decoder.push(&bytes[..cut]);
            out += &decoder.push(&bytes[cut..]);
            out += &decoder.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
        let mut decoder = Utf8Decoder::default();
        let mut out = String::new();
        for byte in bytes {
            let piece = decoder.push(std::slice::from_ref(byte));
            assert!(!piece.contains('\u{FFFD}'));
            out += &piece;
        }
        assert_eq!(out + &decoder.finish(), text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.push(b"a\xffb"), "a\u{FFFD}b");
        // A character cut short at the end of the reply.
        assert_eq!(decoder.push("é".as_bytes().get(..1).unwrap()), "");
        assert_eq!(decoder.finish(), "\u{FFFD}");
    }
}

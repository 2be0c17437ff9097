//! llama.cpp in this process (the `embedded` feature, the default engine when `LM_API_URL` is
//! unset). One OS thread owns the backend, the model and one context with a sequence per
//! concurrent reply (`worker`); tokio talks to it over channels. The model comes from
//! `LM_MODEL_PATH` or is fetched from the Hugging Face hub into its cache ([`crate::hub`]) after
//! the app is already serving. Knows no HTTP server and no database.
mod stops;
mod worker;

use std::{
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use llama_cpp_2::{
    LlamaBackendDeviceType,
    context::params::LlamaContextParams,
    llama_backend::LlamaBackend,
    model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel, params::LlamaModelParams},
    token::LlamaToken,
};

use crate::{
    config::FlashAttention,
    hub::{self, HubError, HubSettings},
    lm::{LmError, LmStream, ModelInfo, ModelStatus, PromptMessage, ReplyOptions},
};

/// What the embedded engine needs from the configuration.
#[derive(Clone, Debug)]
pub struct EmbeddedSettings {
    /// A local GGUF file; `None`: fetch `hub`'s file.
    pub model_path: Option<PathBuf>,
    pub hub: HubSettings,
    /// Threads for decoding (`LM_THREADS`).
    pub threads: usize,
    /// Sequences decoded together: the replies generated at once.
    pub slots: usize,
    /// Context of each sequence in tokens (prompt + reply), at most the model's training size.
    pub context_per_slot: u32,
    /// Tokens decoded per step across sequences (prompt chunks and one token per reply).
    pub batch: u32,
    /// `LM_FLASH_ATTENTION`.
    pub flash_attention: FlashAttention,
    /// `LM_GPU_LAYERS`: layers offloaded to a GPU; `None`: all when there is one (`gpu_layers`).
    pub gpu_layers: Option<u32>,
}

/// A handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedEngine {
    shared: Arc<Shared>,
}

struct Shared {
    settings: EmbeddedSettings,
    state: Mutex<LoadState>,
    progress: hub::Progress,
}

enum LoadState {
    Downloading,
    Loading,
    Ready(Arc<Loaded>),
    Failed(String),
}

/// A loaded model and the way to its thread.
struct Loaded {
    name: String,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    /// The template's markers this model would write as text (a reply ends at one).
    stops: &'static [&'static str],
    /// Tokens of context each reply has.
    n_ctx_seq: u32,
    requests: std::sync::mpsc::Sender<worker::Request>,
}

/// The backend may be initialised once per process; every engine (tests start several) shares it.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("llama.cpp could not start: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Creating contexts in parallel is unsound in llama.cpp (it touches the model): one at a time.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

impl EmbeddedEngine {
    /// Starts getting the model ready in the background: a download (on the tokio runtime) when
    /// there is no local file, then loading on the engine's own thread. Answers at once.
    pub fn start(settings: EmbeddedSettings) -> Self {
        let local = settings.model_path.clone();
        let engine = Self {
            shared: Arc::new(Shared {
                state: Mutex::new(match local {
                    Some(_) => LoadState::Loading,
                    None => LoadState::Downloading,
                }),
                progress: hub::Progress::default(),
                settings,
            }),
        };
        match local {
            Some(path) => engine.spawn_thread(path),
            None => {
                let engine = engine.clone();
                tokio::spawn(async move { engine.download().await });
            }
        }
        engine
    }

    /// Fetches the model, then loads it. While the hub cannot be reached (the network is not
    /// up yet, a cut that outlasted the retries), it tries again with backoff, resuming the
    /// bytes it has; any other failure is final and says what to change.
    async fn download(self) {
        let mut wait = Duration::from_secs(10);
        loop {
            match hub::fetch_model(&self.shared.settings.hub, &self.shared.progress).await {
                Ok(path) => {
                    self.set_state(LoadState::Loading);
                    return self.spawn_thread(path);
                }
                Err(e @ (HubError::Unreachable { .. } | HubError::Download { .. })) => {
                    self.fail(format!(
                        "{e}. Trying again in {}.",
                        humantime::format_duration(wait)
                    ));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(300));
                    self.set_state(LoadState::Downloading);
                }
                Err(e) => return self.fail(e.to_string()),
            }
        }
    }

    fn set_state(&self, state: LoadState) {
        *self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn fail(&self, message: String) {
        tracing::error!("the embedded model is not available: {message}");
        // Shown as a sentence in the indicator and in replies.
        let mut chars = message.chars();
        let message = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => message,
        };
        self.set_state(LoadState::Failed(message));
    }

    fn loaded(&self) -> Result<Arc<Loaded>, LmError> {
        match &*self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            LoadState::Ready(loaded) => Ok(loaded.clone()),
            LoadState::Downloading => {
                Err(LmError::NotReady(match self.shared.progress.percent() {
                    Some(percent) => format!(
                        "The model is still downloading ({percent}%). Please retry once it is ready."
                    ),
                    None => "The model is still downloading. Please retry once it is ready.".into(),
                }))
            }
            LoadState::Loading => Err(LmError::Loading),
            LoadState::Failed(message) => Err(LmError::NotReady(message.clone())),
        }
    }

    fn spawn_thread(&self, path: PathBuf) {
        let engine = self.clone();
        let spawned = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || {
                let settings = &engine.shared.settings;
                let model = match load_model(&path, settings.gpu_layers) {
                    Ok(model) => Arc::new(model),
                    Err(message) => return engine.fail(message),
                };
                let (template, stops) = chat_template(&model);
                let n_ctx_seq = settings
                    .context_per_slot
                    .min(model.n_ctx_train().max(256))
                    .max(256);
                let slots = settings.slots.max(1);
                let threads = i32::try_from(settings.threads.max(1)).unwrap_or(1);
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(n_ctx_seq * slots as u32))
                    .with_n_batch(settings.batch)
                    .with_n_ubatch(settings.batch)
                    .with_n_seq_max(slots as u32)
                    .with_n_threads(threads)
                    .with_n_threads_batch(threads)
                    .with_flash_attention_policy(match settings.flash_attention {
                        FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
                        FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
                        FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
                    });
                let context = {
                    let _one_at_a_time = CONTEXT_CREATION
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    backend().and_then(|backend| {
                        model.new_context(backend, params).map_err(|e| {
                            format!("llama.cpp could not make a context for the model: {e}")
                        })
                    })
                };
                let context = match context {
                    Ok(context) => context,
                    Err(message) => return engine.fail(message),
                };
                let (requests, inbox) = std::sync::mpsc::channel();
                let name = model_name(&path);
                tracing::info!(
                    model = %path.display(),
                    n_ctx_seq,
                    slots,
                    threads,
                    flash_attention = ?settings.flash_attention,
                    "the embedded model is ready"
                );
                engine.set_state(LoadState::Ready(Arc::new(Loaded {
                    name,
                    model: model.clone(),
                    template,
                    stops,
                    n_ctx_seq,
                    requests,
                })));
                let worker =
                    worker::Worker::new(&model, context, slots, settings.batch as usize, n_ctx_seq);
                // A panic in the bindings ends the replies in flight (their streams close); the
                // indicator and later replies then say so instead of waiting for ever.
                let run = std::panic::AssertUnwindSafe(|| worker.run(inbox));
                if std::panic::catch_unwind(run).is_err() {
                    engine.fail(
                        "The embedded engine stopped unexpectedly (see the log). Restart the app."
                            .into(),
                    );
                }
            });
        if let Err(e) = spawned {
            self.fail(format!("the engine thread could not start: {e}"));
        }
    }

    /// Starts a reply: the prompt through the model's chat template, tokenized, queued on the
    /// engine's thread. Dropping the stream cancels it at the next decode step.
    pub fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
    ) -> Result<LmStream, LmError> {
        let stops = self.loaded()?.stops;
        self.stream_chat_stopping_at(messages, options, stops)
    }

    /// [`Self::stream_chat`] with other stop strings than the template's: the tests make words
    /// a model is known to write one, as no model here writes a template's markers on cue.
    pub fn stream_chat_stopping_at(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        stops: &'static [&'static str],
    ) -> Result<LmStream, LmError> {
        let loaded = self.loaded()?;
        let prompt = prompt_text(&loaded.model, &loaded.template, messages)?;
        let tokens = loaded.model.vocab().tokenize(prompt.as_bytes(), true, true);
        if tokens.is_empty() {
            return Err(LmError::Engine("the prompt is empty".into()));
        }
        let n_prompt = tokens.len() as u64;
        // One token of room at least for the reply.
        if n_prompt >= u64::from(loaded.n_ctx_seq) {
            return Err(LmError::ContextOverflow {
                n_prompt_tokens: n_prompt,
                n_ctx: u64::from(loaded.n_ctx_seq),
            });
        }
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let request = worker::Request {
            tokens,
            max_tokens: options.max_tokens.max(1),
            sampling: worker::Sampling {
                temperature: options.temperature,
                top_p: options.top_p,
                seed: options.seed.unwrap_or_else(rand::random),
            },
            stops,
            events,
        };
        loaded
            .requests
            .send(request)
            .map_err(|_| LmError::Engine("the engine's thread has stopped".into()))?;
        Ok(LmStream::from_engine(receiver, loaded.name.clone()))
    }

    /// A message's exact cost in prompt tokens, its chat-template framing included; `None`
    /// while no model is loaded.
    pub fn count_tokens(&self, role: &str, text: &str) -> Option<u32> {
        let loaded = self.loaded().ok()?;
        let message = [PromptMessage {
            role: role_name(role),
            images: Vec::new(),
            content: text.to_owned(),
        }];
        let framed = apply_template(&loaded.model, &loaded.template, &message, false).ok()?;
        let tokens = loaded
            .model
            .vocab()
            .tokenize(framed.as_bytes(), false, true);
        u32::try_from(tokens.len()).ok()
    }

    /// The context each reply has, in tokens.
    pub fn context_tokens(&self) -> Option<u32> {
        Some(self.loaded().ok()?.n_ctx_seq)
    }

    pub fn models(&self) -> Result<Vec<ModelInfo>, LmError> {
        let loaded = self.loaded()?;
        Ok(vec![ModelInfo {
            id: loaded.name.clone(),
            n_ctx: Some(loaded.n_ctx_seq),
        }])
    }

    pub fn status(&self) -> ModelStatus {
        match &*self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            LoadState::Ready(_) => ModelStatus::Ready,
            LoadState::Loading => ModelStatus::Loading,
            LoadState::Downloading => ModelStatus::Downloading(self.shared.progress.percent()),
            LoadState::Failed(message) => ModelStatus::Failed(message.clone()),
        }
    }
}

/// The roles a template knows, by their fixed names.
fn role_name(role: &str) -> &'static str {
    match role {
        "system" => "system",
        "assistant" => "assistant",
        _ => "user",
    }
}

/// Loads a GGUF file; a file that is missing or not a model is a readable error, never a crash.
fn load_model(path: &Path, gpu_layers: Option<u32>) -> Result<LlamaModel, String> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .map_err(|e| {
            format!(
                "The model file {} cannot be read ({e}). Set LM_MODEL_PATH to a GGUF file, or LM_API_URL to a llama-server.",
                path.display()
            )
        })?;
    if &magic != b"GGUF" {
        return Err(format!(
            "The model file {} is not a GGUF model. Set LM_MODEL_PATH to a GGUF file, or LM_API_URL to a llama-server.",
            path.display()
        ));
    }
    let backend = backend()?;
    let gpus: Vec<String> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| {
            matches!(
                d.device_type,
                LlamaBackendDeviceType::Gpu | LlamaBackendDeviceType::IntegratedGpu
            )
        })
        .map(|d| format!("{} ({}, {})", d.description, d.backend, d.name))
        .collect();
    let layers = offloaded_layers(gpu_layers, !gpus.is_empty());
    match gpus.first() {
        Some(gpu) => tracing::info!(device = %gpu, layers = layers, "offloading to the GPU"),
        None if layers > 0 => tracing::warn!(
            layers,
            "LM_GPU_LAYERS asks for a GPU, but this build finds none (built without the cuda or vulkan feature, or no device): the model runs on the CPU"
        ),
        None => tracing::info!("no GPU: the model runs on the CPU"),
    }
    tracing::info!(model = %path.display(), "loading the model");
    let params = LlamaModelParams::default().with_n_gpu_layers(layers);
    LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
        format!(
            "llama.cpp could not load the model file {} ({e}): it may be damaged or of an architecture this build does not know.",
            path.display()
        )
    })
}

/// Layers to offload: as asked (`LM_GPU_LAYERS`), else every layer when a GPU is there and none
/// without one. llama.cpp caps the count at the model's layers.
fn offloaded_layers(asked: Option<u32>, gpu_present: bool) -> u32 {
    asked.unwrap_or(if gpu_present { u32::MAX } else { 0 })
}

/// The model's own chat template when llama.cpp knows it (it recognises the common ones by
/// their text), else ChatML; with the stop strings the model needs on it. A model's own
/// template ends its turns with tokens of its vocabulary, which end generation; on the ChatML
/// fallback a model that never learnt it writes the markers as text (`stops`).
fn chat_template(model: &LlamaModel) -> (LlamaChatTemplate, &'static [&'static str]) {
    let chatml = || {
        let template = LlamaChatTemplate::new("chatml").expect("no NUL in a literal");
        (template, stops::CHATML_STOPS)
    };
    let probe = [PromptMessage {
        role: "user",
        images: Vec::new(),
        content: "hi".into(),
    }];
    match model.chat_template(None) {
        Ok(template) if apply_template(model, &template, &probe, true).is_ok() => (template, &[]),
        Ok(_) => {
            tracing::warn!("llama.cpp does not know the model's chat template; using ChatML");
            chatml()
        }
        Err(_) => {
            tracing::info!("the model has no chat template; using ChatML");
            chatml()
        }
    }
}

/// The prompt for `messages`: the template with the assistant's turn opened after them, or,
/// when the last message is the assistant's own (Continue), that message left open: the
/// template's text after it (its end-of-turn) is cut off, so the model goes on from it.
fn prompt_text(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[PromptMessage],
) -> Result<String, LmError> {
    let Some(last) = messages.last().filter(|m| m.role == "assistant") else {
        return apply_template(model, template, messages, true);
    };
    let mut prompt = apply_template(model, template, messages, false)?;
    let text = last.content.replace('\0', "\u{FFFD}");
    match prompt.rfind(text.as_str()) {
        Some(at) => prompt.truncate(at + text.len()),
        None => {
            tracing::warn!("the chat template changed the reply's text; continuing after its turn")
        }
    }
    Ok(prompt)
}

fn apply_template(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[PromptMessage],
    add_assistant: bool,
) -> Result<String, LmError> {
    let messages = messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.to_owned(), m.content.replace('\0', "\u{FFFD}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LmError::Engine(format!("the prompt could not be prepared: {e}")))?;
    model
        .apply_chat_template(template, &messages, add_assistant)
        .map_err(|e| LmError::Engine(format!("the chat template failed: {e}")))
}

/// The model's name: its file name without `.gguf`.
fn model_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf").unwrap_or(&name).to_owned()
}

/// Tokens the two lists share from the start.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_layer_goes_to_a_gpu_when_there_is_one_unless_told_otherwise() {
        assert_eq!(super::offloaded_layers(None, true), u32::MAX);
        assert_eq!(super::offloaded_layers(None, false), 0);
        assert_eq!(super::offloaded_layers(Some(12), true), 12);
        assert_eq!(super::offloaded_layers(Some(0), true), 0);
    }
}

//! llama.cpp in this process (the `embedded` feature, the default engine when `LM_API_URL` is
//! unset). Each loaded model has an OS thread of its own with one context and a sequence per
//! concurrent reply (`worker`); tokio talks to it over channels. The default model comes from
//! `LM_MODEL_PATH` or is fetched from the Hugging Face hub into its cache ([`crate::hub`]) after
//! the app is already serving; the library (`library`) lists the other models, the pool (`pool`)
//! loads them. Knows no HTTP server and no database.
pub mod cpu;
mod gguf;
mod library;
mod manage;
mod pool;
mod stops;
mod template;
mod tool_calls;
mod vision;
mod worker;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use llama_cpp_2::{
    model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel},
    token::LlamaToken,
};

use crate::{
    hub::{self, HubError, HubSettings},
    lm::{
        FlashAttention, LmError, LmEvent, LmStream, ModelInfo, ModelStatus, PromptMessage,
        ReplyOptions, ToolDefinition,
    },
};
use library::{Library, ModelFile};
pub use manage::ManageError;
use pool::{Loaded, Slot, make_room, sweep};
use tool_calls::{CallFilter, CallFormat};

/// What the embedded engine needs from the configuration.
#[derive(Clone, Debug)]
pub struct EmbeddedSettings {
    /// A local GGUF file; `None`: fetch `hub`'s file.
    pub model_path: Option<PathBuf>,
    pub hub: HubSettings,
    /// `LM_MODELS_DIR`: more models for the library.
    pub models_dir: PathBuf,
    /// Where the operator's choice of default model is kept (`DATA_DIR/default-model`).
    pub default_choice: Option<PathBuf>,
    /// `LM_MAX_LOADED`: models loaded at once.
    pub max_loaded: usize,
    /// `LM_MODEL_IDLE`: a model unused this long is unloaded.
    pub model_idle: Option<Duration>,
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
    /// Which of llama.cpp's CPU builds runs (`LM_CPU_VARIANT`, `LM_BACKENDS_DIR`, `LM_CPU_PROBE`).
    pub cpu: cpu::CpuSettings,
}

/// A handle on the engine; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedEngine {
    shared: Arc<Shared>,
}

struct Shared {
    settings: EmbeddedSettings,
    /// The configured model's name: LM_MODEL_PATH's file, or the configured hub file.
    configured_id: String,
    /// The default model's name (a chat without a model of its own is answered by it): the
    /// configured one unless the operator chose another (`manage`).
    default_id: Mutex<String>,
    /// Where the configured model's file is.
    default: Mutex<DefaultFile>,
    /// The operator's downloads in progress or failed (`manage`).
    downloads: Mutex<Vec<manage::Download>>,
    progress: hub::Progress,
    library: Mutex<Scanned>,
    pool: Mutex<HashMap<String, Slot>>,
    /// Told whenever a model finishes loading or fails to.
    changed: tokio::sync::Notify,
}

/// Where the default model's file is.
enum DefaultFile {
    Downloading,
    Present(PathBuf),
    Failed(String),
}

struct Scanned {
    library: Library,
    at: Option<Instant>,
}

/// The library is looked at again when listed and older than this.
const LIBRARY_MAX_AGE: Duration = Duration::from_secs(5);
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EmbeddedEngine {
    /// Starts getting the default model ready in the background: a download (on the tokio
    /// runtime) when there is no local file, then loading on its own thread. Answers at once.
    pub fn start(settings: EmbeddedSettings) -> Self {
        let local = settings.model_path.clone();
        let configured_id =
            library::model_name(local.as_deref().unwrap_or(Path::new(&settings.hub.file)));
        let engine = Self {
            shared: Arc::new(Shared {
                default: Mutex::new(match &local {
                    Some(path) => DefaultFile::Present(path.clone()),
                    None => DefaultFile::Downloading,
                }),
                default_id: Mutex::new(configured_id.clone()),
                configured_id,
                downloads: Mutex::new(Vec::new()),
                progress: hub::Progress::default(),
                library: Mutex::new(Scanned {
                    library: Library::default(),
                    at: None,
                }),
                pool: Mutex::new(HashMap::new()),
                changed: tokio::sync::Notify::new(),
                settings,
            }),
        };
        engine.rescan();
        engine.restore_default();
        match local {
            Some(_) => engine.load_default(),
            None => {
                let engine = engine.clone();
                tokio::spawn(async move { engine.download().await });
            }
        }
        tokio::spawn(sweep(Arc::downgrade(&engine.shared)));
        engine
    }

    /// Loads the default model now, so that the first reply does not wait for it (unless the
    /// models loaded meanwhile leave no room: it then loads on first use).
    fn load_default(&self) {
        let file = match self.resolve(None) {
            Ok(file) => file,
            Err(e) => return tracing::error!("the embedded model is not available: {e}"),
        };
        {
            let mut pool = lock(&self.shared.pool);
            if pool.contains_key(&file.id)
                || !make_room(&mut pool, self.shared.settings.max_loaded.max(1))
            {
                return;
            }
            pool.insert(file.id.clone(), Slot::Loading);
        }
        self.spawn_thread(file);
    }

    /// Fetches the model, then loads it. While the hub cannot be reached (the network is not
    /// up yet, a cut that outlasted the retries), it tries again with backoff, resuming the
    /// bytes it has; any other failure is final and says what to change.
    async fn download(self) {
        let mut wait = Duration::from_secs(10);
        loop {
            match hub::fetch_model(&self.shared.settings.hub, &self.shared.progress).await {
                Ok(path) => {
                    *lock(&self.shared.default) = DefaultFile::Present(path);
                    self.rescan();
                    return self.load_default();
                }
                Err(e @ (HubError::Unreachable { .. } | HubError::Download { .. })) => {
                    self.fail(format!(
                        "{e}. Trying again in {}.",
                        humantime::format_duration(wait)
                    ));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(300));
                    *lock(&self.shared.default) = DefaultFile::Downloading;
                }
                Err(e) => return self.fail(e.to_string()),
            }
        }
    }

    fn fail(&self, message: String) {
        tracing::error!("the embedded model is not available: {message}");
        *lock(&self.shared.default) = DefaultFile::Failed(sentence(message));
    }

    /// Looks for models again (a directory walk; headers only of new or changed files).
    fn rescan(&self) {
        let sources = library::Sources {
            default: match &*lock(&self.shared.default) {
                DefaultFile::Present(path) => Some(path.clone()),
                _ => None,
            },
            models_dir: self.shared.settings.models_dir.clone(),
            hub_cache: self.shared.settings.hub.cache_dir.clone(),
        };
        let mut scanned = lock(&self.shared.library);
        scanned.library.scan(&sources);
        scanned.at = Some(Instant::now());
    }

    /// The library, looked at again when older than `LIBRARY_MAX_AGE` (off the async workers).
    async fn library(&self) -> Vec<ModelFile> {
        let stale = lock(&self.shared.library)
            .at
            .is_none_or(|at| at.elapsed() > LIBRARY_MAX_AGE);
        if stale {
            let engine = self.clone();
            let _ = tokio::task::spawn_blocking(move || engine.rescan()).await;
        }
        lock(&self.shared.library).library.models.clone()
    }

    /// The file a reply asks for: the chat's model, or the default (`None`).
    fn resolve(&self, model: Option<&str>) -> Result<ModelFile, LmError> {
        let default = self.default_id();
        let id = model.unwrap_or(&default);
        if id == self.shared.configured_id {
            match &*lock(&self.shared.default) {
                DefaultFile::Present(_) => {}
                DefaultFile::Downloading => {
                    return Err(LmError::NotReady(match self.shared.progress.percent() {
                        Some(percent) => format!(
                            "The model is still downloading ({percent}%). Please retry once it is ready."
                        ),
                        None => {
                            "The model is still downloading. Please retry once it is ready.".into()
                        }
                    }));
                }
                DefaultFile::Failed(message) => return Err(LmError::NotReady(message.clone())),
            }
        }
        let present = |library: &Library| {
            library
                .find(id)
                .filter(|file| id == self.shared.configured_id || file.path.is_file())
                .cloned()
        };
        if let Some(file) = present(&lock(&self.shared.library).library) {
            return Ok(file);
        }
        // Perhaps just added, or removed: look once more.
        self.rescan();
        present(&lock(&self.shared.library).library)
            .ok_or_else(|| {
                LmError::NotReady(format!(
                    "The model “{id}” is not in the library any more. Choose another in the chat's settings."
                ))
            })
    }

    /// Starts a reply: the prompt through the model's chat template, tokenized, queued on the
    /// model's thread; a model not loaded yet is loaded first (the stream's first event says
    /// so). Dropping the stream cancels it at the next decode step. `tools`: what the model
    /// may call (`tool_calls`: its calls come out as [`LmEvent::ToolCalls`]).
    pub fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        tools: &[ToolDefinition],
    ) -> Result<LmStream, LmError> {
        self.stream(messages, options, tools, None)
    }

    /// [`Self::stream_chat`] with other stop strings than the template's: the tests make words
    /// a model is known to write one, as no model here writes a template's markers on cue.
    pub fn stream_chat_stopping_at(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        stops: &'static [&'static str],
    ) -> Result<LmStream, LmError> {
        self.stream(messages, options, &[], Some(stops))
    }

    fn stream(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        tools: &[ToolDefinition],
        stops: Option<&'static [&'static str]>,
    ) -> Result<LmStream, LmError> {
        let file = self.resolve(options.model.as_deref())?;
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let images = messages
            .iter()
            .any(|m| m.images.iter().any(|i| i.data.is_some()));
        let loaded_now = self.loaded_now(&file.id);
        // A prompt with images, or offering tools (the model's own template, untrusted, is run),
        // is made off the async workers.
        let heavy = images || !tools.is_empty();
        if let Some(loaded) = loaded_now.as_ref().filter(|_| !heavy) {
            submit(loaded, messages, options, tools, stops, events)?;
            return Ok(LmStream::from_engine(receiver, file.id));
        }
        let engine = self.clone();
        let (messages, options, id) = (messages.to_vec(), options.clone(), file.id.clone());
        let tools = tools.to_vec();
        tokio::spawn(async move {
            let loaded = match loaded_now {
                Some(loaded) => Ok(loaded),
                None => {
                    let _ = events.send(Ok(vec![LmEvent::ModelLoading(file.id.clone())]));
                    let loaded = engine.ready(&file, Some(&events)).await;
                    if loaded.is_ok() {
                        let _ = events.send(Ok(vec![LmEvent::ModelReady]));
                    }
                    loaded
                }
            };
            let sender = events.clone();
            let started = match loaded {
                Ok(loaded) => tokio::task::spawn_blocking(move || {
                    submit(&loaded, &messages, &options, &tools, stops, sender)
                })
                .await
                .unwrap_or_else(|e| Err(LmError::Engine(format!("the prompt failed: {e}")))),
                Err(error) => Err(error),
            };
            if let Err(error) = started {
                let _ = events.send(Err(error));
            }
        });
        Ok(LmStream::from_engine(receiver, id))
    }

    /// Whether `model` (`None`: the default) takes images: it has a vision projector, loaded
    /// (or, while the model is not loaded, found beside it).
    pub fn has_vision(&self, model: Option<&str>) -> bool {
        let Ok(file) = self.resolve(model) else {
            return false;
        };
        match lock(&self.shared.pool).get(&file.id) {
            Some(Slot::Ready { loaded, .. }) => loaded.vision.is_some(),
            _ => file.projector.is_some(),
        }
    }

    /// A message's exact cost in prompt tokens with `model` (`None`: the default), its
    /// chat-template framing included; `None` while that model is not loaded.
    pub fn count_tokens(&self, model: Option<&str>, role: &str, text: &str) -> Option<u32> {
        let default = self.default_id();
        let id = model.unwrap_or(&default);
        let loaded = match lock(&self.shared.pool).get(id) {
            Some(Slot::Ready { loaded, .. }) => loaded.clone(),
            _ => return None,
        };
        let message = [PromptMessage {
            role: role_name(role),
            images: Vec::new(),
            content: text.to_owned(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }];
        let framed = apply_template(&loaded.model, &loaded.template, &message, false).ok()?;
        let tokens = loaded
            .model
            .vocab()
            .tokenize(framed.as_bytes(), false, true);
        u32::try_from(tokens.len()).ok()
    }

    /// The context each reply with `model` (`None`: the default) has, in tokens: the loaded
    /// model's, else what its file says it will be.
    pub fn context_tokens(&self, model: Option<&str>) -> Option<u32> {
        let file = self.resolve(model).ok()?;
        if let Some(Slot::Ready { loaded, .. }) = lock(&self.shared.pool).get(&file.id) {
            return Some(loaded.n_ctx_seq);
        }
        Some(context_per_reply(
            &self.shared.settings,
            file.info.context_length,
        ))
    }

    /// The library: every model this engine can serve, with what its file says and whether it
    /// is loaded. An error only while the default model is not there yet and nothing else is.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, LmError> {
        let files = self.library().await;
        if files.is_empty() {
            self.resolve(None)?;
        }
        let default = self.default_id();
        let downloads = self.downloads(&files);
        let pool = lock(&self.shared.pool);
        let mut models: Vec<ModelInfo> = files
            .into_iter()
            .map(|file| {
                let loaded = match pool.get(&file.id) {
                    Some(Slot::Ready { loaded, .. }) => Some(loaded.n_ctx_seq),
                    _ => None,
                };
                ModelInfo {
                    n_ctx: Some(loaded.unwrap_or_else(|| {
                        context_per_reply(&self.shared.settings, file.info.context_length)
                    })),
                    size_bytes: Some(file.size_bytes),
                    quantization: file.info.quantization.clone(),
                    context_length: file.info.context_length,
                    template: Some(file.template.to_owned()),
                    vision: match pool.get(&file.id) {
                        Some(Slot::Ready { loaded, .. }) => loaded.vision.is_some(),
                        _ => file.projector.is_some(),
                    },
                    loaded: loaded.is_some(),
                    loading: matches!(pool.get(&file.id), Some(Slot::Loading)),
                    default: file.id == default,
                    source: Some(match &file.origin {
                        library::Origin::Default => "configured".to_owned(),
                        library::Origin::Folder => "models folder".to_owned(),
                        library::Origin::Hub(repo) => format!("hub: {repo}"),
                    }),
                    id: file.id,
                    download: None,
                }
            })
            .collect();
        models.extend(downloads);
        Ok(models)
    }

    /// The default model's name.
    fn default_id(&self) -> String {
        lock(&self.shared.default_id).clone()
    }

    /// The indicator: the default model's download or failure first, then a model loading,
    /// then ready.
    pub fn status(&self) -> ModelStatus {
        let default = self.default_id();
        match &*lock(&self.shared.default) {
            _ if default != self.shared.configured_id => {}
            DefaultFile::Downloading => {
                return ModelStatus::Downloading(self.shared.progress.percent());
            }
            DefaultFile::Failed(message) => return ModelStatus::Failed(message.clone()),
            DefaultFile::Present(_) => {}
        }
        let pool = lock(&self.shared.pool);
        if let Some((id, _)) = pool.iter().find(|(_, slot)| matches!(slot, Slot::Loading)) {
            return ModelStatus::Loading(Some(id.clone()));
        }
        match pool.get(&default) {
            Some(Slot::Failed { message, .. }) => ModelStatus::Failed(message.clone()),
            // Not loaded (unloaded, or another model took its room) is ready: it loads on use.
            _ => ModelStatus::Ready,
        }
    }
}

/// The context each reply has on a model trained with `trained` tokens.
fn context_per_reply(settings: &EmbeddedSettings, trained: Option<u32>) -> u32 {
    let trained = trained.unwrap_or(u32::MAX);
    settings.context_per_slot.min(trained.max(256)).max(256)
}

/// Queues a reply on `loaded`'s thread, its events to `events`.
fn submit(
    loaded: &Loaded,
    messages: &[PromptMessage],
    options: &ReplyOptions,
    tools: &[ToolDefinition],
    stops: Option<&'static [&'static str]>,
    events: worker::EventSender,
) -> Result<(), LmError> {
    let images: Vec<&[u8]> = messages
        .iter()
        .flat_map(|m| m.images.iter().filter_map(|i| i.data.as_deref()))
        .collect();
    let mut format = None;
    let (tokens, media) = match (&loaded.vision, images.is_empty()) {
        (_, true) => {
            let prompt = prompt(loaded, messages, tools, &mut format)?;
            let tokens = loaded.model.vocab().tokenize(prompt.as_bytes(), true, true);
            (tokens, None)
        }
        (Some(projector), false) => {
            let messages = vision::with_image_markers(messages);
            let prompt = prompt(loaded, &messages, tools, &mut format)?;
            let (tokens, media) = vision::tokenize(projector, &loaded.model, &prompt, &images)?;
            (tokens, Some(media))
        }
        (None, false) => {
            return Err(LmError::Engine(format!(
                "the model {} takes no images: its vision projector could not be loaded (see the log)",
                loaded.name
            )));
        }
    };
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
    let request = worker::Request {
        tokens,
        media,
        max_tokens: options.max_tokens.max(1),
        sampling: worker::Sampling {
            temperature: options.temperature,
            top_p: options.top_p,
            seed: options.seed.unwrap_or_else(rand::random),
        },
        stops: stops.unwrap_or(loaded.stops),
        calls: format.map(|format| tool_calling(loaded, format, tools)),
        events,
        _in_use: loaded.in_use.clone(),
    };
    loaded.requests.send(request).map_err(|_| {
        LmError::Engine(format!(
            "the thread of the model {} has stopped",
            loaded.name
        ))
    })
}

/// A message shown as a sentence in the indicator and in replies: its first letter capital.
fn sentence(message: String) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => message,
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
        tool_calls: Vec::new(),
        tool_call_id: None,
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

/// The prompt for `messages` (and `format`, how the model writes calls, when it is offered
/// `tools`): its chat template through llama.cpp, or with tools its own Jinja template through
/// minijinja; a template that knows no tools gets them told in the system message.
fn prompt(
    loaded: &Loaded,
    messages: &[PromptMessage],
    tools: &[ToolDefinition],
    format: &mut Option<CallFormat>,
) -> Result<String, LmError> {
    let through_llama_cpp = |messages: &[PromptMessage], add| {
        apply_template(&loaded.model, &loaded.template, messages, add)
    };
    if tools.is_empty() {
        if messages
            .iter()
            .any(|m| !m.tool_calls.is_empty() || m.role == "tool")
        {
            return continued(&tool_calls::with_calls_as_text(messages), through_llama_cpp);
        }
        return continued(messages, through_llama_cpp);
    }
    let source = loaded.template.to_str().unwrap_or_default();
    if let Some(own) = CallFormat::of_template(source) {
        let eos = loaded
            .model
            .vocab()
            .token_to_piece(loaded.model.vocab().eos(), true, None);
        let eos = String::from_utf8_lossy(&eos);
        let through_jinja = |messages: &[PromptMessage], add| {
            template::render(source, messages, tools, &eos, add).map_err(LmError::Engine)
        };
        match continued(messages, through_jinja) {
            Ok(prompt) => {
                *format = Some(own);
                return Ok(prompt);
            }
            Err(error) => {
                tracing::warn!("{error}; the tools are told in a system message instead")
            }
        }
    }
    *format = Some(CallFormat::Hermes);
    continued(&tool_calls::taught(messages, tools), through_llama_cpp)
}

/// What a reply's stream needs to find the model's calls: the filter, and the grammar that
/// holds a call to its form from its marker on.
fn tool_calling(
    loaded: &Loaded,
    format: CallFormat,
    tools: &[ToolDefinition],
) -> worker::ToolCalling {
    let vocab = loaded.model.vocab();
    // A marker that is one token of the vocabulary (often a control token, which renders as
    // nothing otherwise) is rendered as its text, so the filter sees it.
    let marker_token = format
        .marker()
        .map(|marker| vocab.tokenize(marker.as_bytes(), false, true))
        .filter(|tokens| tokens.len() == 1)
        .map(|tokens| tokens[0]);
    worker::ToolCalling {
        filter: CallFilter::new(format, tools),
        grammar: format.grammar(tools),
        marker_token,
    }
}

/// The prompt `render` writes for `messages`: with the assistant's turn opened after them, or,
/// when the last message is the assistant's own (Continue), that message left open: the
/// template's text after it (its end-of-turn) is cut off, so the model goes on from it.
fn continued(
    messages: &[PromptMessage],
    render: impl Fn(&[PromptMessage], bool) -> Result<String, LmError>,
) -> Result<String, LmError> {
    let Some(last) = messages.last().filter(|m| m.role == "assistant") else {
        return render(messages, true);
    };
    let mut prompt = render(messages, false)?;
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

/// Tokens the two lists share from the start.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

//! llama.cpp in this process (the `embedded` feature, the default engine when `LM_API_URL` is
//! unset). One OS thread owns the backend, the model and one context with a sequence per
//! concurrent reply (`worker`); tokio talks to it over channels. The model comes from
//! `LM_MODEL_PATH` or is fetched from the Hugging Face hub into its cache ([`crate::hub`]) after
//! the app is already serving. Knows no HTTP server and no database.
mod gguf;
mod library;
mod manage;
mod stops;
mod worker;

use std::{
    collections::HashMap,
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

use llama_cpp_2::{
    LlamaBackendDeviceType,
    context::{LlamaContext, params::LlamaContextParams},
    llama_backend::LlamaBackend,
    model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel, params::LlamaModelParams},
    token::LlamaToken,
};

use crate::{
    config::FlashAttention,
    hub::{self, HubError, HubSettings},
    lm::{LmError, LmEvent, LmStream, ModelInfo, ModelStatus, PromptMessage, ReplyOptions},
};
use library::{Library, ModelFile};
pub use manage::ManageError;

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

/// A model of the pool: being loaded, loaded, or failed to load (tried again after a while).
enum Slot {
    Loading,
    Ready {
        loaded: Arc<Loaded>,
        last_used: Instant,
    },
    Failed {
        message: String,
        at: Instant,
    },
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
    /// One more holder for each reply in progress (its request holds a clone): a model with
    /// more than this one is never unloaded.
    in_use: Arc<()>,
}

impl Loaded {
    fn busy(&self) -> bool {
        Arc::strong_count(&self.in_use) > 1
    }
}

/// The library is looked at again when listed and older than this.
const LIBRARY_MAX_AGE: Duration = Duration::from_secs(5);
/// A model that failed to load is tried again after this.
const RETRY_FAILED_LOAD: Duration = Duration::from_secs(10);

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

    /// The model when it is loaded now (marked as used).
    fn loaded_now(&self, id: &str) -> Option<Arc<Loaded>> {
        match lock(&self.shared.pool).get_mut(id) {
            Some(Slot::Ready { loaded, last_used }) => {
                *last_used = Instant::now();
                Some(loaded.clone())
            }
            _ => None,
        }
    }

    /// The model `file`, loaded: at once when it is, else after loading it, which first waits
    /// for room (`LM_MAX_LOADED`: the model used least recently that is writing no reply is
    /// unloaded). Gives up when `events` closes (the reply was stopped).
    async fn ready(
        &self,
        file: &ModelFile,
        events: Option<&worker::EventSender>,
    ) -> Result<Arc<Loaded>, LmError> {
        loop {
            if events.is_some_and(|e| e.is_closed()) {
                return Err(LmError::Engine("the reply was stopped".into()));
            }
            let notified = self.shared.changed.notified();
            {
                let mut pool = lock(&self.shared.pool);
                match pool.get_mut(&file.id) {
                    Some(Slot::Ready { loaded, last_used }) => {
                        *last_used = Instant::now();
                        return Ok(loaded.clone());
                    }
                    Some(Slot::Failed { message, at }) if at.elapsed() < RETRY_FAILED_LOAD => {
                        return Err(LmError::NotReady(message.clone()));
                    }
                    Some(Slot::Loading) => {}
                    Some(Slot::Failed { .. }) | None => {
                        if make_room(&mut pool, self.shared.settings.max_loaded.max(1)) {
                            pool.insert(file.id.clone(), Slot::Loading);
                            drop(pool);
                            self.spawn_thread(file.clone());
                        }
                    }
                }
            }
            // Woken when a load ends; a reply ending (room made) is seen within the interval.
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// Loads `file` on a thread of its own, which then runs the model's replies until the
    /// model is unloaded (its last handle dropped).
    fn spawn_thread(&self, file: ModelFile) {
        let engine = self.clone();
        let id = file.id.clone();
        let spawned = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || {
                let started = Instant::now();
                let settings = &engine.shared.settings;
                let model = match load_model(&file.path, settings.gpu_layers) {
                    Ok(model) => Arc::new(model),
                    Err(message) => return engine.load_failed(&file.id, message),
                };
                let (template, stops) = chat_template(&model);
                let n_ctx_seq = context_per_reply(settings, Some(model.n_ctx_train()));
                let slots = settings.slots.max(1);
                let context = match new_context(&model, settings, n_ctx_seq, slots) {
                    Ok(context) => context,
                    Err(message) => return engine.load_failed(&file.id, message),
                };
                let (requests, requests_inbox) = std::sync::mpsc::channel();
                let loaded = Arc::new(Loaded {
                    name: file.id.clone(),
                    model: model.clone(),
                    template,
                    stops,
                    n_ctx_seq,
                    requests,
                    in_use: Arc::new(()),
                });
                tracing::info!(
                    model = %file.path.display(),
                    n_ctx_seq,
                    slots,
                    threads = settings.threads,
                    flash_attention = ?settings.flash_attention,
                    seconds = started.elapsed().as_secs_f64(),
                    "the embedded model is ready"
                );
                let batch = settings.batch as usize;
                lock(&engine.shared.pool).insert(
                    file.id.clone(),
                    Slot::Ready {
                        loaded,
                        last_used: Instant::now(),
                    },
                );
                engine.shared.changed.notify_waiters();
                // The thread must not keep the engine alive: the pool's handle on the model
                // (dropped on unloading, or with the engine) is what ends it.
                let weak = Arc::downgrade(&engine.shared);
                drop(engine);
                let worker = worker::Worker::new(&model, context, slots, batch, n_ctx_seq);
                // A panic in the bindings ends the replies in flight (their streams close); the
                // indicator and later replies then say so instead of waiting for ever.
                let run = std::panic::AssertUnwindSafe(|| worker.run(requests_inbox));
                if std::panic::catch_unwind(run).is_err() {
                    if let Some(shared) = weak.upgrade() {
                        EmbeddedEngine { shared }.load_failed(
                            &file.id,
                            "The embedded engine stopped unexpectedly (see the log). Restart the app."
                                .into(),
                        );
                    }
                } else {
                    tracing::info!(model = %file.id, "the model is unloaded");
                }
            });
        if let Err(e) = spawned {
            self.load_failed(&id, format!("the engine thread could not start: {e}"));
        }
    }

    fn load_failed(&self, id: &str, message: String) {
        tracing::error!(model = %id, "the model could not be loaded: {message}");
        lock(&self.shared.pool).insert(
            id.to_owned(),
            Slot::Failed {
                message: sentence(message),
                at: Instant::now(),
            },
        );
        self.shared.changed.notify_waiters();
    }

    /// Starts a reply: the prompt through the model's chat template, tokenized, queued on the
    /// model's thread; a model not loaded yet is loaded first (the stream's first event says
    /// so). Dropping the stream cancels it at the next decode step.
    pub fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
    ) -> Result<LmStream, LmError> {
        self.stream(messages, options, None)
    }

    /// [`Self::stream_chat`] with other stop strings than the template's: the tests make words
    /// a model is known to write one, as no model here writes a template's markers on cue.
    pub fn stream_chat_stopping_at(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        stops: &'static [&'static str],
    ) -> Result<LmStream, LmError> {
        self.stream(messages, options, Some(stops))
    }

    fn stream(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        stops: Option<&'static [&'static str]>,
    ) -> Result<LmStream, LmError> {
        let file = self.resolve(options.model.as_deref())?;
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        if let Some(loaded) = self.loaded_now(&file.id) {
            submit(&loaded, messages, options, stops, events)?;
            return Ok(LmStream::from_engine(receiver, file.id));
        }
        let engine = self.clone();
        let (messages, options, id) = (messages.to_vec(), options.clone(), file.id.clone());
        tokio::spawn(async move {
            let _ = events.send(Ok(vec![LmEvent::ModelLoading(file.id.clone())]));
            let started = engine.ready(&file, Some(&events)).await.and_then(|loaded| {
                let _ = events.send(Ok(vec![LmEvent::ModelReady]));
                submit(&loaded, &messages, &options, stops, events.clone())
            });
            if let Err(error) = started {
                let _ = events.send(Err(error));
            }
        });
        Ok(LmStream::from_engine(receiver, id))
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

/// Makes room for one more model: unloads the least recently used models writing no reply
/// until fewer than `max` remain. `false` when every model that would have to go is busy.
fn make_room(pool: &mut HashMap<String, Slot>, max: usize) -> bool {
    pool.retain(|_, slot| !matches!(slot, Slot::Failed { .. }));
    loop {
        if pool.len() < max {
            return true;
        }
        let idle = pool
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Ready { loaded, last_used } if !loaded.busy() => Some((*last_used, id)),
                _ => None,
            })
            .min()
            .map(|(_, id)| id.clone());
        let Some(id) = idle else { return false };
        tracing::info!(model = %id, "unloading the model to make room for another");
        pool.remove(&id);
    }
}

/// Every few seconds: a model writing a reply counts as used now; one unused for
/// `LM_MODEL_IDLE` is unloaded. Ends with the engine.
async fn sweep(shared: std::sync::Weak<Shared>) {
    loop {
        let tick = match shared.upgrade() {
            Some(shared) => {
                let idle = shared.settings.model_idle;
                let mut pool = lock(&shared.pool);
                pool.retain(|id, slot| match slot {
                    Slot::Ready { loaded, last_used } => {
                        if loaded.busy() {
                            *last_used = Instant::now();
                            true
                        } else if idle.is_some_and(|idle| last_used.elapsed() >= idle) {
                            tracing::info!(model = %id, "unloading the model: unused for LM_MODEL_IDLE");
                            false
                        } else {
                            true
                        }
                    }
                    _ => true,
                });
                idle.map_or(Duration::from_secs(5), |idle| {
                    (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
                })
            }
            None => return,
        };
        tokio::time::sleep(tick).await;
    }
}

/// The context each reply has on a model trained with `trained` tokens.
fn context_per_reply(settings: &EmbeddedSettings, trained: Option<u32>) -> u32 {
    let trained = trained.unwrap_or(u32::MAX);
    settings.context_per_slot.min(trained.max(256)).max(256)
}

/// The context of `model`'s replies: a sequence of `n_ctx_seq` tokens for each of `slots`.
fn new_context<'m>(
    model: &'m LlamaModel,
    settings: &EmbeddedSettings,
    n_ctx_seq: u32,
    slots: usize,
) -> Result<LlamaContext<'m>, String> {
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
    let _one_at_a_time = lock(&CONTEXT_CREATION);
    let backend = backend()?;
    model
        .new_context(backend, params)
        .map_err(|e| format!("llama.cpp could not make a context for the model: {e}"))
}

/// Queues a reply on `loaded`'s thread, its events to `events`.
fn submit(
    loaded: &Loaded,
    messages: &[PromptMessage],
    options: &ReplyOptions,
    stops: Option<&'static [&'static str]>,
    events: worker::EventSender,
) -> Result<(), LmError> {
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
    let request = worker::Request {
        tokens,
        max_tokens: options.max_tokens.max(1),
        sampling: worker::Sampling {
            temperature: options.temperature,
            top_p: options.top_p,
            seed: options.seed.unwrap_or_else(rand::random),
        },
        stops: stops.unwrap_or(loaded.stops),
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

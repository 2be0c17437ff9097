//! The loaded models: each on a thread of its own with its context, loaded on first use, at most
//! `LM_MAX_LOADED` at once (the least recently used that writes no reply unloaded first), and
//! unloaded after `LM_MODEL_IDLE` unused. Loading a GGUF file and making its context.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    path::Path,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use llama_cpp_2::{
    LlamaBackendDeviceType,
    context::{LlamaContext, params::LlamaContextParams},
    llama_backend::LlamaBackend,
    model::{LlamaChatTemplate, LlamaModel, params::LlamaModelParams},
};

use super::cpu::CpuSettings;
use super::{
    EmbeddedEngine, EmbeddedSettings, Shared, chat_template, context_per_reply, library::ModelFile,
    lock, sentence, worker,
};
use crate::lm::{FlashAttention, LmError};

/// A model of the pool: being loaded, loaded, or failed to load (tried again after a while).
pub(super) enum Slot {
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
pub(super) struct Loaded {
    pub(super) name: String,
    /// Declared before the model, so dropped before it: the projector points into it.
    pub(super) vision: Option<super::vision::Projector>,
    pub(super) model: Arc<LlamaModel>,
    pub(super) template: LlamaChatTemplate,
    /// The template's markers this model would write as text (a reply ends at one).
    pub(super) stops: &'static [&'static str],
    /// Tokens of context each reply has.
    pub(super) n_ctx_seq: u32,
    pub(super) requests: std::sync::mpsc::Sender<worker::Request>,
    /// One more holder for each reply in progress (its request holds a clone): a model with
    /// more than this one is never unloaded.
    pub(super) in_use: Arc<()>,
}

impl Loaded {
    pub(super) fn busy(&self) -> bool {
        Arc::strong_count(&self.in_use) > 1
    }
}

/// A model that failed to load is tried again after this.
const RETRY_FAILED_LOAD: Duration = Duration::from_secs(10);

/// The backend may be initialised once per process; every engine (tests start several) shares it,
/// and the first one's CPU settings choose the CPU build for all.
fn backend(cpu: &CpuSettings) -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            super::cpu::load_backends(cpu)?;
            LlamaBackend::init().map_err(|e| format!("llama.cpp could not start: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Creating contexts in parallel is unsound in llama.cpp (it touches the model): one at a time.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

impl EmbeddedEngine {
    /// The model when it is loaded now (marked as used).
    pub(super) fn loaded_now(&self, id: &str) -> Option<Arc<Loaded>> {
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
    pub(super) async fn ready(
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
    pub(super) fn spawn_thread(&self, file: ModelFile) {
        let engine = self.clone();
        let id = file.id.clone();
        let spawned = std::thread::Builder::new()
            .name("llama-engine".into())
            .spawn(move || {
                let started = Instant::now();
                let settings = &engine.shared.settings;
                let (model, on_gpu) = match load_model(&file.path, settings) {
                    Ok((model, on_gpu)) => (Arc::new(model), on_gpu),
                    Err(message) => return engine.load_failed(&file.id, message),
                };
                let (template, stops) = chat_template(&model);
                let n_ctx_seq = context_per_reply(settings, Some(model.n_ctx_train()));
                let slots = settings.slots.max(1);
                let context = match new_context(&model, settings, n_ctx_seq, slots) {
                    Ok(context) => context,
                    Err(message) => return engine.load_failed(&file.id, message),
                };
                let vision = file.projector.as_deref().and_then(|projector| {
                    super::vision::load(projector, &model, settings.threads, on_gpu)
                });
                let (requests, requests_inbox) = std::sync::mpsc::channel();
                let loaded = Arc::new(Loaded {
                    name: file.id.clone(),
                    vision: vision.clone(),
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
                let worker = worker::Worker::new(&model, context, slots, batch, n_ctx_seq, vision);
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

    pub(super) fn load_failed(&self, id: &str, message: String) {
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
}

/// Makes room for one more model: unloads the least recently used models writing no reply
/// until fewer than `max` remain. `false` when every model that would have to go is busy.
pub(super) fn make_room(pool: &mut HashMap<String, Slot>, max: usize) -> bool {
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
pub(super) async fn sweep(shared: std::sync::Weak<Shared>) {
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
    let backend = backend(&settings.cpu)?;
    model
        .new_context(backend, params)
        .map_err(|e| format!("llama.cpp could not make a context for the model: {e}"))
}

/// Loads a GGUF file; a file that is missing or not a model is a readable error, never a crash.
/// The model, and whether it went to a GPU.
fn load_model(path: &Path, settings: &EmbeddedSettings) -> Result<(LlamaModel, bool), String> {
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
    let backend = backend(&settings.cpu)?;
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
    let layers = offloaded_layers(settings.gpu_layers, !gpus.is_empty());
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
    let model = LlamaModel::load_from_file(backend, path, &params).map_err(|e| {
        format!(
            "llama.cpp could not load the model file {} ({e}): it may be damaged or of an architecture this build does not know.",
            path.display()
        )
    })?;
    Ok((model, layers > 0 && !gpus.is_empty()))
}

/// Layers to offload: as asked (`LM_GPU_LAYERS`), else every layer when a GPU is there and none
/// without one. llama.cpp caps the count at the model's layers.
fn offloaded_layers(asked: Option<u32>, gpu_present: bool) -> u32 {
    asked.unwrap_or(if gpu_present { u32::MAX } else { 0 })
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

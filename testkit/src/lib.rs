//! What the app's integration tests (app/tests/it) and the benchmarks (bench) share:
//! [`fake_lm`], a fake llama-server replaying the recorded format, and [`app_process`], the
//! built `app` binary as a child process whose configuration is only what the caller sets,
//! [`hostile`] input, and [`mmproj`], a tiny vision projector made on the spot.
pub mod app_process;
pub mod fake_lm;
pub mod hostile;
pub mod mmproj;

pub use app_process::AppProcess;
pub use fake_lm::{FakeCall, FakeLm, Knobs};

/// The shared folder of fixtures and models: `SHARED_DIR` when set, else the `shared` beside
/// the checkout, found from the current directory up (a test runs in its package's folder, a
/// benchmark wherever it is started), else from where this crate was compiled. Found at run
/// time because one build cache serves checkouts at different paths.
pub fn shared_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("SHARED_DIR") {
        return dir.into();
    }
    let is_shared = |dir: &std::path::Path| dir.join("fixtures/llama-server").is_dir();
    if let Ok(current) = std::env::current_dir()
        && let Some(found) = current
            .ancestors()
            .map(|a| a.join("shared"))
            .find(|d| is_shared(d))
    {
        return found;
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

//! What the app's integration tests (app/tests/it) and the benchmarks (bench) share:
//! [`fake_lm`], a fake llama-server replaying the recorded format, and [`app_process`], the
//! built `app` binary as a child process whose configuration is only what the caller sets.
pub mod app_process;
pub mod fake_lm;

pub use app_process::AppProcess;
pub use fake_lm::{FakeLm, Knobs};

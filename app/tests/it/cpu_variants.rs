//! llama.cpp's CPU builds (`embedded::cpu`): each is tried in a child process, and one whose
//! instructions this CPU does not run (a build that traps, standing in for a virtual CPU that
//! announces more than it runs) is never loaded; the app runs on the best of the others.
#![cfg(feature = "embedded")]
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::helpers::{shared_model, spawn_app};

fn backends() -> PathBuf {
    app::embedded::cpu::backends_dir(None).expect("the build's backends folder")
}

fn probe(library: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_app"))
        .arg(app::embedded::cpu::SUBCOMMAND)
        .arg(library)
        .output()
        .expect("run the probe")
}

/// A "CPU build" that ranks itself above every real one and dies of an illegal instruction
/// when ggml starts it, as a build for instructions the CPU announces but does not run would.
fn trapping_build(dir: &Path) -> PathBuf {
    let source = dir.join("trap.c");
    std::fs::write(
        &source,
        "int ggml_backend_score(void) { return 1 << 30; }\n\
         void *ggml_backend_init(void) { __builtin_trap(); }\n",
    )
    .unwrap();
    let library = dir.join(format!(
        "{}ggml-cpu-trap{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (the embedded engine's build needs one too)");
    assert!(built.success());
    library
}

#[test]
fn every_cpu_build_answers_its_probe_and_the_baseline_runs_everywhere() {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(backends()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("ggml-cpu-") {
            continue;
        }
        let output = probe(&path);
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{name}: {:?} {answer}",
            output.status
        );
        assert!(
            answer.starts_with("runs ") || answer.trim() == "unsupported",
            "{name}: {answer}"
        );
        if answer.starts_with("runs ") {
            runs.push(name);
        }
    }
    assert!(
        runs.iter().any(|name| name.contains("ggml-cpu-x64")),
        "the x86-64 baseline runs on any x86-64: {runs:?}"
    );
}

#[test]
fn a_build_that_traps_is_killed_in_its_probe_not_in_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let output = probe(&trapping_build(dir.path()));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(output.status.signal(), Some(4), "{:?}", output.status);
}

/// The app process on the tiny model, with `envs` besides.
async fn tiny_model_app(data: &std::path::Path, envs: &[(&str, String)]) -> testkit::AppProcess {
    let model = shared_model("llama-2-tiny-random.gguf");
    let mut all = vec![("LM_MODEL_PATH", model.display().to_string())];
    all.extend(envs.iter().cloned());
    spawn_app(data, &all).await
}

#[tokio::test]
async fn the_app_runs_the_best_build_that_passes_and_says_which() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("backends");
    std::fs::create_dir(&folder).unwrap();
    for entry in std::fs::read_dir(backends()).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    trapping_build(&folder);
    let mut app = tiny_model_app(
        data.path(),
        &[
            ("LM_BACKENDS_DIR", folder.display().to_string()),
            ("LM_THREADS", "1".into()),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app.log().contains("CPU build (") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = app.log();
    assert!(log.contains("trap CPU build does not run here"), "{log}");
    assert!(log.contains("illegal instruction"), "{log}");
    assert!(log.contains("failed their probe: trap"), "{log}");
    let chosen = log
        .lines()
        .find_map(|line| line.split("llama.cpp runs its ").nth(1))
        .unwrap_or_else(|| panic!("no CPU build chosen: {log}"));
    assert!(!chosen.starts_with("trap "), "{chosen}");
    // And the model loads on it.
    let status = settled_status(&mut app).await;
    assert!(status.contains("Model ready"), "{status}");
}

#[tokio::test]
async fn a_cpu_build_that_is_not_there_is_a_clear_error_naming_those_that_are() {
    let data = tempfile::tempdir().unwrap();
    let mut app = tiny_model_app(data.path(), &[("LM_CPU_VARIANT", "pentium".into())]).await;
    let status = settled_status(&mut app).await;
    assert!(
        status.contains("LM_CPU_VARIANT=pentium is not one of"),
        "{status}"
    );
    assert!(status.contains("x64"), "{status}");
}

/// `/model/status` once the model is no longer loading.
async fn settled_status(app: &mut testkit::AppProcess) -> String {
    app.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = crate::helpers::browser();
    loop {
        let status = match client
            .get(format!("{}/model/status", app.base))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if !status.is_empty() && !status.contains("model-status loading") {
            return status;
        }
        assert!(Instant::now() < deadline, "still {status:?}; {}", app.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! llama.cpp's CPU builds. ggml is compiled once for each level of CPU instructions
//! (`GGML_CPU_ALL_VARIANTS`: `libggml-cpu-x64.so`, `…-haswell.so`, `…-zen4.so`, …) and one of
//! them is loaded at start: the best one this CPU really runs. "Really": ggml ranks the builds
//! by what the CPU announces, and a virtual CPU can announce instructions that then trap (a
//! `-march=native` build died with an invalid-opcode fault on our CI machine). So each build is
//! first tried in a child process (`app probe-cpu-variant FILE`) that runs its matrix kernels on
//! the common weight types and checks the answers; a build whose child dies, hangs or computes
//! wrong is never loaded into this process.
use std::{
    ffi::{CString, c_void},
    io::Read,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use llama_cpp_sys_2 as sys;

/// The first argument that makes the app (or bench) the probe of one CPU build.
pub const SUBCOMMAND: &str = "probe-cpu-variant";

/// One probe computes a few small products: one that takes longer than this has hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The probe's exit code when it could not check the build, or a product came out wrong.
const FAILED: u8 = 3;

/// Which CPU build to run, and how to try them.
#[derive(Clone, Debug)]
pub struct CpuSettings {
    /// `LM_CPU_VARIANT`: this build and no other; `None`: the best one that passes its probe.
    pub variant: Option<String>,
    /// `LM_BACKENDS_DIR`; `None`: `backends` beside the binary, else where the build put them.
    pub backends_dir: Option<PathBuf>,
    /// The program started as the probe (`LM_CPU_PROBE`; by default this binary).
    pub probe_program: PathBuf,
}

/// One CPU build and what its probe found.
#[derive(Debug)]
struct Variant {
    name: String,
    path: PathBuf,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Runs here, ranked by ggml (higher: it uses more of the CPU's instructions).
    Runs(i32),
    /// ggml's own check says this CPU lacks its instructions.
    Unsupported,
    /// The probe died, hung, or computed wrong: never loaded.
    Failed(String),
}

/// Loads llama.cpp's backends into this process: the best CPU build that runs here (or the one
/// `LM_CPU_VARIANT` names), and any GPU backend in the same folder. Returns the CPU build's name.
/// Once per process, before llama.cpp is used.
pub(super) fn load_backends(settings: &CpuSettings) -> Result<String, String> {
    let dir = backends_dir(settings.backends_dir.as_deref())?;
    let mut variants = cpu_variants(&dir)?;
    if let Some(wanted) = &settings.variant {
        let names: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
        variants.retain(|v| &v.name == wanted);
        if variants.is_empty() {
            return Err(format!(
                "LM_CPU_VARIANT={wanted} is not one of llama.cpp's CPU builds in {}: {}",
                dir.display(),
                names.join(", ")
            ));
        }
    }
    probe_all(&mut variants, &settings.probe_program);
    for variant in &variants {
        if let Outcome::Failed(why) = &variant.outcome {
            tracing::warn!(variant = %variant.name, "llama.cpp's {} CPU build does not run here: {why}", variant.name);
        }
    }
    let Some(chosen) = best(&variants) else {
        return Err(format!(
            "none of llama.cpp's CPU builds in {} runs on this CPU ({})",
            dir.display(),
            summary(&variants)
        ));
    };
    load(&chosen.path)?;
    tracing::info!(
        variant = %chosen.name,
        "llama.cpp runs its {} CPU build ({})",
        chosen.name,
        summary(&variants)
    );
    for gpu in other_backends(&dir) {
        match load(&gpu) {
            Ok(()) => tracing::info!(backend = %gpu.display(), "loaded a GPU backend"),
            Err(why) => tracing::warn!("{why}: no GPU of that kind (or no driver) here"),
        }
    }
    Ok(chosen.name.clone())
}

/// The backends folder: as configured, else `backends` beside the binary (an installed app, the
/// Docker image), else the one the build wrote (`cargo run`, the tests).
pub fn backends_dir(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("backends")));
    if let Some(dir) = beside.filter(|dir| dir.is_dir()) {
        return Ok(dir);
    }
    sys::BACKENDS_DIR.map(PathBuf::from).ok_or_else(|| {
        "this build has no folder of llama.cpp backends: set LM_BACKENDS_DIR".to_string()
    })
}

/// The CPU builds in `dir` (`libggml-cpu-NAME.so`), by name.
fn cpu_variants(dir: &Path) -> Result<Vec<Variant>, String> {
    let prefix = format!("{}ggml-cpu-", std::env::consts::DLL_PREFIX);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read llama.cpp's backends in {}: {e}", dir.display()))?;
    let mut variants: Vec<Variant> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let name = file
                .strip_prefix(&prefix)?
                .strip_suffix(std::env::consts::DLL_SUFFIX)?;
            Some(Variant {
                name: name.to_string(),
                path: entry.path(),
                outcome: Outcome::Unsupported,
            })
        })
        .collect();
    variants.sort_by(|a, b| a.name.cmp(&b.name));
    if variants.is_empty() {
        return Err(format!(
            "no CPU build of llama.cpp ({prefix}*{}) in {}: set LM_BACKENDS_DIR to the folder that has them",
            std::env::consts::DLL_SUFFIX,
            dir.display()
        ));
    }
    Ok(variants)
}

/// The other backends in `dir` (a GPU's: `libggml-cuda.so`, `libggml-vulkan.so`, …).
fn other_backends(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}ggml-", std::env::consts::DLL_PREFIX);
    let cpu = format!("{prefix}cpu");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            file.starts_with(&prefix)
                && !file.starts_with(&cpu)
                && file.ends_with(std::env::consts::DLL_SUFFIX)
        })
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

/// Tries every build, each in its own child process, all at once.
fn probe_all(variants: &mut [Variant], program: &Path) {
    std::thread::scope(|scope| {
        for variant in variants.iter_mut() {
            scope.spawn(move || variant.outcome = probe_in_child(program, &variant.path));
        }
    });
}

/// Starts `program probe-cpu-variant FILE` and reads what it found.
fn probe_in_child(program: &Path, library: &Path) -> Outcome {
    let mut child = match Command::new(program)
        .arg(SUBCOMMAND)
        .arg(library)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", program.display())),
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Failed(format!("still running after {PROBE_TIMEOUT:?}"));
            }
            Err(e) => return Outcome::Failed(format!("cannot wait for the probe: {e}")),
        }
    };
    let mut answer = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut answer);
    }
    outcome_of(status, &answer, program)
}

/// What a probe's exit and output mean.
fn outcome_of(status: std::process::ExitStatus, answer: &str, program: &Path) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let what = match signal {
            4 => " (an illegal instruction: the CPU announces what it does not run)",
            11 => " (a segmentation fault)",
            _ => "",
        };
        return Outcome::Failed(format!("killed by signal {signal}{what}"));
    }
    let line = answer.lines().find(|line| {
        line.starts_with("runs ") || line.starts_with("failed ") || *line == "unsupported"
    });
    match (status.code(), line) {
        (Some(0), Some("unsupported")) => Outcome::Unsupported,
        (Some(0), Some(line)) => match line.strip_prefix("runs ").map(str::parse::<i32>) {
            Some(Ok(score)) => Outcome::Runs(score),
            _ => Outcome::Failed(format!("the probe answered {line:?}")),
        },
        (Some(code), Some(line)) if code == i32::from(FAILED) => {
            Outcome::Failed(line.trim_start_matches("failed ").to_string())
        }
        _ => Outcome::Failed(format!(
            "{} gave no answer as a probe ({status}): LM_CPU_PROBE must be this app's binary",
            program.display()
        )),
    }
}

/// The build ggml ranks highest among those that run here.
fn best(variants: &[Variant]) -> Option<&Variant> {
    variants
        .iter()
        .filter_map(|v| match v.outcome {
            Outcome::Runs(score) => Some((score, v)),
            _ => None,
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, v)| v)
}

/// "3 run here (x64, sse42, haswell); 2 need instructions this CPU lacks; 1 failed (zen4)".
fn summary(variants: &[Variant]) -> String {
    let named = |keep: &dyn Fn(&Outcome) -> bool| -> Vec<&str> {
        variants
            .iter()
            .filter(|v| keep(&v.outcome))
            .map(|v| v.name.as_str())
            .collect()
    };
    let runs = named(&|o| matches!(o, Outcome::Runs(_)));
    let unsupported = named(&|o| *o == Outcome::Unsupported);
    let failed = named(&|o| matches!(o, Outcome::Failed(_)));
    let mut parts = vec![format!(
        "{} of {} run here: {}",
        runs.len(),
        variants.len(),
        runs.join(", ")
    )];
    if !unsupported.is_empty() {
        parts.push(format!(
            "{} need instructions this CPU lacks",
            unsupported.len()
        ));
    }
    if !failed.is_empty() {
        parts.push(format!(
            "{} failed their probe: {}",
            failed.len(),
            failed.join(", ")
        ));
    }
    parts.join("; ")
}

/// Loads one backend library into ggml's registry.
fn load(path: &Path) -> Result<(), String> {
    let name = c_path(path)?;
    // SAFETY: `name` is a valid C string; ggml copies what it keeps. A library that will not
    // load (or whose own check refuses this machine) gives null, which is an error here.
    let reg = unsafe { sys::ggml_backend_load(name.as_ptr()) };
    if reg.is_null() {
        return Err(format!("ggml could not load {}", path.display()));
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, String> {
    path.to_str()
        .and_then(|s| CString::new(s).ok())
        .ok_or_else(|| format!("the path {} cannot be given to ggml", path.display()))
}

/// The probe, in the child process: `runs SCORE`, `unsupported`, or `failed WHY` (exit 3). A
/// build whose instructions this CPU does not run kills this process instead, which is the point.
pub fn child_main(args: &[String]) -> ExitCode {
    let [library] = args else {
        eprintln!(
            "usage: app {SUBCOMMAND} <{}ggml-cpu-NAME{}>",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        return ExitCode::from(2);
    };
    match probe(Path::new(library)) {
        Ok(None) => println!("unsupported"),
        Ok(Some(score)) => println!("runs {score}"),
        Err(why) => {
            println!("failed {why}");
            return ExitCode::from(FAILED);
        }
    }
    ExitCode::SUCCESS
}

/// The weight types whose kernels are checked: what GGUF models are mostly made of.
const WEIGHT_TYPES: [(sys::ggml_type, &str); 8] = [
    (sys::GGML_TYPE_F16, "f16"),
    (sys::GGML_TYPE_BF16, "bf16"),
    (sys::GGML_TYPE_Q4_0, "q4_0"),
    (sys::GGML_TYPE_Q4_1, "q4_1"),
    (sys::GGML_TYPE_Q8_0, "q8_0"),
    (sys::GGML_TYPE_Q4_K, "q4_k"),
    (sys::GGML_TYPE_Q5_K, "q5_k"),
    (sys::GGML_TYPE_Q6_K, "q6_k"),
];

/// ggml's rank of the build for this CPU, and when it is not 0, every weight type's matrix
/// product on it checked against the same product computed here.
fn probe(library: &Path) -> Result<Option<i32>, String> {
    let score = ggml_score(library)?;
    if score == 0 {
        return Ok(None);
    }
    load(library)?;
    let backend = CpuBackend::start()?;
    // Long enough rows for the k-quants' 256-value blocks; one column and several, as a
    // reply's tokens and a prompt's are multiplied by different kernels.
    let (k, m) = (512, 16);
    for columns in [1, 7] {
        let a = numbers(k * m, 1);
        let b = numbers(k * columns, 2);
        for (weight_type, name) in WEIGHT_TYPES {
            let (weights, reference_a) = quantize(weight_type, &a, k, m)?;
            let product = backend.mul_mat(weight_type, &weights, &b, k, m, columns)?;
            check(&product, &reference_a, &b, k, m, columns).map_err(|why| {
                format!("computes {name} × f32 wrong ({columns} column(s)): {why}")
            })?;
        }
    }
    Ok(Some(score))
}

/// Calls the library's own `ggml_backend_score` (0: this CPU lacks what it was built for).
fn ggml_score(library: &Path) -> Result<i32, String> {
    let name = c_path(library)?;
    // SAFETY: dlopen/dlsym with valid C strings; the symbol, when present, is ggml's
    // `int ggml_backend_score(void)`. The handle stays open: ggml opens the same library next.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err(format!("cannot open {}", library.display()));
        }
        let symbol = libc::dlsym(handle, c"ggml_backend_score".as_ptr());
        if symbol.is_null() {
            return Err(format!("{} is not a ggml backend", library.display()));
        }
        let score: extern "C" fn() -> libc::c_int = std::mem::transmute(symbol);
        Ok(score())
    }
}

/// Deterministic numbers in [-1, 1).
fn numbers(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `values` (`m` rows of `k`) in `weight_type`, and what those bytes stand for, as f32.
fn quantize(
    weight_type: sys::ggml_type,
    values: &[f32],
    k: usize,
    m: usize,
) -> Result<(Vec<u8>, Vec<f32>), String> {
    // SAFETY: `ggml_row_size` and `ggml_get_type_traits` are pure lookups for a valid type;
    // the buffers are sized by ggml's own row size for `m` rows of `k`, so neither
    // `ggml_quantize_chunk` nor `to_float` writes or reads past them.
    unsafe {
        let row = sys::ggml_row_size(weight_type, k as i64);
        let mut bytes = vec![0u8; row * m];
        let written = sys::ggml_quantize_chunk(
            weight_type,
            values.as_ptr(),
            bytes.as_mut_ptr().cast::<c_void>(),
            0,
            m as i64,
            k as i64,
            std::ptr::null(),
        );
        if written != bytes.len() {
            return Err(format!(
                "quantizing wrote {written} bytes of {}",
                bytes.len()
            ));
        }
        let traits = sys::ggml_get_type_traits(weight_type);
        let to_float = traits
            .as_ref()
            .and_then(|t| t.to_float)
            .ok_or("ggml has no way back to f32 for this type")?;
        let mut back = vec![0f32; k * m];
        to_float(
            bytes.as_ptr().cast::<c_void>(),
            back.as_mut_ptr(),
            (k * m) as i64,
        );
        Ok((bytes, back))
    }
}

/// `product` (`columns` columns of `m`) against `a × b` computed here, within what quantizing
/// the activations (to 8 bits, or to f16/bf16) can move it.
fn check(
    product: &[f32],
    a: &[f32],
    b: &[f32],
    k: usize,
    m: usize,
    columns: usize,
) -> Result<(), String> {
    for column in 0..columns {
        for row in 0..m {
            let (mut exact, mut scale) = (0f64, 0f64);
            for i in 0..k {
                let (x, y) = (f64::from(a[row * k + i]), f64::from(b[column * k + i]));
                exact += x * y;
                scale += (x * y).abs();
            }
            let got = f64::from(product[column * m + row]);
            if !got.is_finite() || (got - exact).abs() > 0.03 * scale + 1e-3 {
                return Err(format!("row {row}: {got} where {exact:.4} was expected"));
            }
        }
    }
    Ok(())
}

/// The CPU backend of the build just loaded (the first device ggml lists: the only one in a
/// probe's process).
struct CpuBackend(sys::ggml_backend_t);

impl CpuBackend {
    fn start() -> Result<Self, String> {
        // SAFETY: plain ggml registry calls; null results are checked before use.
        unsafe {
            let device = sys::ggml_backend_dev_get(0);
            if device.is_null() {
                return Err("ggml lists no device".into());
            }
            let backend = sys::ggml_backend_dev_init(device, std::ptr::null());
            if backend.is_null() {
                return Err("ggml could not start the CPU backend".into());
            }
            Ok(Self(backend))
        }
    }

    /// `weights` (`m` rows of `k`, in `weight_type`) times `b` (`columns` columns of `k` f32).
    fn mul_mat(
        &self,
        weight_type: sys::ggml_type,
        weights: &[u8],
        b: &[f32],
        k: usize,
        m: usize,
        columns: usize,
    ) -> Result<Vec<f32>, String> {
        // SAFETY: the context holds only tensor headers and the graph (no_alloc), sized by
        // ggml's own overheads; the tensors' memory comes from the backend's buffer; the bytes
        // copied in and out are exactly each tensor's size (checked against `ggml_nbytes`).
        // Everything made here is freed here.
        unsafe {
            let params = sys::ggml_init_params {
                mem_size: sys::ggml_tensor_overhead() * 8 + sys::ggml_graph_overhead(),
                mem_buffer: std::ptr::null_mut(),
                no_alloc: true,
            };
            let ctx = sys::ggml_init(params);
            if ctx.is_null() {
                return Err("ggml_init failed".into());
            }
            let a = sys::ggml_new_tensor_2d(ctx, weight_type, k as i64, m as i64);
            let x = sys::ggml_new_tensor_2d(ctx, sys::GGML_TYPE_F32, k as i64, columns as i64);
            let y = sys::ggml_mul_mat(ctx, a, x);
            let graph = sys::ggml_new_graph(ctx);
            sys::ggml_build_forward_expand(graph, y);
            let buffer = sys::ggml_backend_alloc_ctx_tensors(ctx, self.0);
            let result = if buffer.is_null() {
                Err("the backend could not allocate the tensors".to_string())
            } else if sys::ggml_nbytes(a) != weights.len()
                || sys::ggml_nbytes(x) != std::mem::size_of_val(b)
                || sys::ggml_nbytes(y) != m * columns * 4
            {
                Err("tensor sizes differ from the data".to_string())
            } else {
                sys::ggml_backend_tensor_set(a, weights.as_ptr().cast(), 0, weights.len());
                sys::ggml_backend_tensor_set(x, b.as_ptr().cast(), 0, std::mem::size_of_val(b));
                if sys::ggml_backend_graph_compute(self.0, graph) == sys::GGML_STATUS_SUCCESS {
                    let mut out = vec![0f32; m * columns];
                    sys::ggml_backend_tensor_get(y, out.as_mut_ptr().cast(), 0, out.len() * 4);
                    Ok(out)
                } else {
                    Err("the graph did not compute".to_string())
                }
            };
            if !buffer.is_null() {
                sys::ggml_backend_buffer_free(buffer);
            }
            sys::ggml_free(ctx);
            result
        }
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        // SAFETY: started by `ggml_backend_dev_init`, freed once.
        unsafe { sys::ggml_backend_free(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn variant(name: &str, outcome: Outcome) -> Variant {
        Variant {
            name: name.into(),
            path: PathBuf::from(name),
            outcome,
        }
    }

    #[test]
    fn the_best_build_that_runs_wins_and_one_that_failed_never_does() {
        let variants = [
            variant("x64", Outcome::Runs(1)),
            variant("haswell", Outcome::Runs(40)),
            variant("zen4", Outcome::Failed("killed by signal 4".into())),
            variant("sapphirerapids", Outcome::Unsupported),
        ];
        assert_eq!(best(&variants).map(|v| v.name.as_str()), Some("haswell"));
        assert_eq!(
            summary(&variants),
            "2 of 4 run here: x64, haswell; 1 need instructions this CPU lacks; 1 failed their probe: zen4"
        );
        assert!(best(&variants[2..]).is_none());
    }

    #[test]
    fn a_probe_killed_or_silent_is_a_failure() {
        let program = Path::new("app");
        // A wait status of "killed by SIGILL" and of exit codes 0 and 3.
        let killed = std::process::ExitStatus::from_raw(4);
        let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        assert!(
            matches!(outcome_of(killed, "", program), Outcome::Failed(why) if why.contains("illegal instruction"))
        );
        assert_eq!(
            outcome_of(exited(0), "runs 57\n", program),
            Outcome::Runs(57)
        );
        assert_eq!(
            outcome_of(exited(0), "unsupported\n", program),
            Outcome::Unsupported
        );
        assert!(
            matches!(outcome_of(exited(3), "failed computes q4_k × f32 wrong\n", program), Outcome::Failed(why) if why == "computes q4_k × f32 wrong")
        );
        // A program that is not this app (a test harness) exits 0 and says something else.
        assert!(
            matches!(outcome_of(exited(0), "running 0 tests\n", program), Outcome::Failed(why) if why.contains("LM_CPU_PROBE"))
        );
    }

    #[test]
    fn a_product_off_by_more_than_quantizing_explains_is_wrong() {
        let (k, m) = (4, 2);
        let a = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0];
        let b = [1.0, 1.0, 1.0, 1.0];
        assert!(check(&[10.0, 1.5], &a, &b, k, m, 1).is_ok());
        assert!(check(&[10.2, 1.5], &a, &b, k, m, 1).is_ok());
        assert!(check(&[11.0, 1.5], &a, &b, k, m, 1).is_err());
        assert!(check(&[f32::NAN, 1.5], &a, &b, k, m, 1).is_err());
    }
}

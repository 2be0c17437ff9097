// The embedded engine's llama.cpp is shared libraries (libllama.so, libggml*.so, and the CPU
// builds in `backends/`). The binaries look for them where llama-cpp-sys-2 built them (`cargo
// build`), then beside themselves, then in the system's folders (the Docker image puts them in
// /usr/local/lib).
use std::path::Path;

fn main() {
    // Set by llama-cpp-sys-2's build (its `links = "llama"`) when its dynamic backends are on.
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
    let mut rpath = String::new();
    if let Some(backends) = std::env::var_os("DEP_LLAMA_BACKENDS_DIR") {
        rpath.push_str(&Path::new(&backends).with_file_name("lib").to_string_lossy());
        rpath.push(':');
    }
    rpath.push_str("$ORIGIN");
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{rpath}");
    remove_dangling_library_links();
}

/// llama-cpp-sys-2 hard-links its libraries into the profile's folder, symbolic links included,
/// which then point at names that are not there; its next build (other features) fails on them
/// ("File exists"). They are never used (the rpath above points at the real ones): removed.
fn remove_dangling_library_links() {
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return;
    };
    let Some(profile_dir) = Path::new(&out_dir).ancestors().nth(3) else {
        return;
    };
    for dir in [
        profile_dir.to_path_buf(),
        profile_dir.join("deps"),
        profile_dir.join("examples"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ["libllama", "libggml", "libmtmd"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            let dangling = entry
                .path()
                .symlink_metadata()
                .is_ok_and(|m| m.is_symlink())
                && std::fs::metadata(entry.path()).is_err();
            if ours && dangling {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

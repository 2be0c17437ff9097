//! The model library: every GGUF model the embedded engine can serve, found in three places
//! (`LM_MODEL_PATH`, the files under `LM_MODELS_DIR`, the Hugging Face cache), each named by its
//! file name and described by its header (`gguf`). Scanning is a directory walk plus one header
//! read per new or changed file; headers are kept by path, size and modification time.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::gguf::{self, GgufInfo};

/// Where the library looks.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The default model's file: `LM_MODEL_PATH`, or the hub file once downloaded.
    pub default: Option<PathBuf>,
    /// `LM_MODELS_DIR`.
    pub models_dir: PathBuf,
    /// The Hugging Face hub cache.
    pub hub_cache: PathBuf,
}

/// Where a model file was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `LM_MODEL_PATH` or the configured hub file.
    Default,
    /// Under `LM_MODELS_DIR`.
    Folder,
    /// In the Hugging Face cache, from this repository ("owner/name").
    Hub(String),
}

/// One model of the library.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// The name to ask for it by: its file name without `.gguf` (made unique with `-2`, `-3`…).
    pub id: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The header's fields, the template's text left out (kept small: listed often).
    pub info: GgufInfo,
    /// The chat template's family (`gguf::template_name`).
    pub template: &'static str,
    pub origin: Origin,
    /// Its vision projector (`projector_for`): with one, the model takes images.
    pub projector: Option<PathBuf>,
}

/// The library as last scanned, and the headers read so far.
#[derive(Default)]
pub struct Library {
    pub models: Vec<ModelFile>,
    headers: HashMap<PathBuf, Header>,
}

/// A file's header as read, under the size and modification time it was read at.
type Header = (u64, Option<SystemTime>, Result<GgufInfo, String>);

/// How deep under a folder model files are looked for (a folder per model is common).
const FOLDER_DEPTH: usize = 3;

impl Library {
    /// Looks again in every place. Files whose header cannot be read are left out (named in the
    /// log once), except the default model, whose loading says what is wrong with it.
    pub fn scan(&mut self, sources: &Sources) {
        let mut found: Vec<(PathBuf, Origin)> = Vec::new();
        if let Some(default) = &sources.default {
            found.push((default.clone(), Origin::Default));
            // The projector beside a configured file (the folder itself is not scanned).
            let mut beside = Vec::new();
            if let Some(folder) = default.parent() {
                gguf_files(folder, 0, &mut beside);
            }
            beside.retain(|p| is_projector_name(p));
            beside.sort();
            found.extend(beside.into_iter().map(|p| (p, Origin::Folder)));
        }
        let mut in_folder = Vec::new();
        gguf_files(&sources.models_dir, FOLDER_DEPTH, &mut in_folder);
        in_folder.sort();
        found.extend(in_folder.into_iter().map(|p| (p, Origin::Folder)));
        found.extend(hub_files(&sources.hub_cache));

        let mut seen = HashSet::new();
        let mut ids = HashSet::new();
        let mut models = Vec::new();
        let mut headers = HashMap::new();
        let mut projectors: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for (path, origin) in found {
            // The same file reached twice (a link, the default also in the folder) is listed once.
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen.insert(real) {
                continue;
            }
            let metadata = std::fs::metadata(&path).ok();
            let size = metadata.as_ref().map_or(0, |m| m.len());
            let modified = metadata.as_ref().and_then(|m| m.modified().ok());
            let header = match self.headers.remove(&path) {
                Some((s, m, header)) if s == size && m == modified => header,
                _ => {
                    let header = gguf::read(&path);
                    if let Err(problem) = &header
                        && origin != Origin::Default
                    {
                        tracing::warn!(path = %path.display(), "a model file is left out of the library: it {problem}");
                    }
                    header
                }
            };
            let mut info = match (&header, &origin) {
                (Ok(info), _) if info.architecture.as_deref() == Some("clip") => {
                    // A vision projector (mmproj), not a model.
                    if let Some(folder) = path.parent() {
                        projectors
                            .entry(folder.to_path_buf())
                            .or_default()
                            .push(path.clone());
                    }
                    headers.insert(path, (size, modified, header));
                    continue;
                }
                (Ok(info), _) => info.clone(),
                (Err(_), Origin::Default) => GgufInfo::default(),
                (Err(_), _) => {
                    headers.insert(path, (size, modified, header));
                    continue;
                }
            };
            headers.insert(path.clone(), (size, modified, header));
            let stem = model_name(&path);
            let mut id = stem.clone();
            let mut n = 2;
            while !ids.insert(id.clone()) {
                id = format!("{stem}-{n}");
                n += 1;
            }
            let template = gguf::template_name(info.chat_template.as_deref());
            info.chat_template = None;
            models.push(ModelFile {
                id,
                path,
                size_bytes: size,
                info,
                template,
                origin,
                projector: None,
            });
        }
        for model in &mut models {
            model.projector = projector_for(&model.path, &projectors);
        }
        self.models = models;
        self.headers = headers;
    }

    pub fn find(&self, id: &str) -> Option<&ModelFile> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// A model's vision projector: a GGUF of architecture `clip` (an `mmproj` file) in the model's
/// folder, as Hugging Face repositories lay them out (one model in several quantizations beside
/// its projector) and llama-server's `-hf` picks them. Of several, the first by name (`f16`
/// before `q8_0`). A projector that does not fit the model (another model's) is found out when
/// it is loaded: the model then serves text only, and the log says why.
fn projector_for(model: &Path, projectors: &HashMap<PathBuf, Vec<PathBuf>>) -> Option<PathBuf> {
    let mut candidates = projectors.get(model.parent()?)?.clone();
    candidates.sort();
    candidates.into_iter().next()
}

/// How projectors are named (`mmproj-model-f16.gguf`, `mmproj-F16.gguf`…): only such files are
/// read beside a configured model.
fn is_projector_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("mmproj"))
}

/// A model's name: its file name without `.gguf`.
pub fn model_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf").unwrap_or(&name).to_owned()
}

/// A file llama.cpp loads as a model: `.gguf`, and of a split model only the first part
/// (llama.cpp finds the others beside it).
fn is_model_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(stem) = name.strip_suffix(".gguf") else {
        return false;
    };
    match split_part(stem) {
        Some(part) => part == 1,
        None => true,
    }
}

/// `name-00002-of-00003` → 2.
fn split_part(stem: &str) -> Option<u32> {
    let (rest, _total) = stem.rsplit_once("-of-")?;
    let (_, part) = rest.rsplit_once('-')?;
    part.parse().ok()
}

fn gguf_files(folder: &Path, depth: usize, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Followed links: the hub cache's snapshots are links to its blobs.
        if path.is_dir() {
            if depth > 0 {
                gguf_files(&path, depth - 1, into);
            }
        } else if path.is_file() && is_model_file(&path) {
            into.push(path);
        }
    }
}

/// `<cache>/models--owner--name/snapshots/<commit>/…/*.gguf`, newest snapshot first within a
/// repository (an older copy of the same file is then left out by name).
fn hub_files(cache: &Path) -> Vec<(PathBuf, Origin)> {
    let mut found = Vec::new();
    let Ok(repos) = std::fs::read_dir(cache) else {
        return found;
    };
    let mut repos: Vec<_> = repos.flatten().map(|e| e.path()).collect();
    repos.sort();
    for repo_dir in repos {
        let Some(repo) = repo_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("models--"))
            .and_then(|n| n.split_once("--"))
            .map(|(owner, name)| format!("{owner}/{name}"))
        else {
            continue;
        };
        let Ok(snapshots) = std::fs::read_dir(repo_dir.join("snapshots")) else {
            continue;
        };
        let mut snapshots: Vec<_> = snapshots
            .flatten()
            .map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok();
                (modified, e.path())
            })
            .collect();
        snapshots.sort_by(|a, b| b.cmp(a));
        let mut names = HashSet::new();
        for (_, snapshot) in snapshots {
            let mut files = Vec::new();
            gguf_files(&snapshot, FOLDER_DEPTH, &mut files);
            files.sort();
            for file in files {
                let relative = file.strip_prefix(&snapshot).unwrap_or(&file).to_path_buf();
                if names.insert(relative) {
                    found.push((file, Origin::Hub(repo.clone())));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_model(name: &str) -> PathBuf {
        testkit::shared_dir()
            .join("models")
            .join(name)
            .canonicalize()
            .expect("the shared test models")
    }

    fn link(target: &Path, link: &Path) {
        std::fs::create_dir_all(link.parent().expect("a parent")).expect("a folder");
        std::os::unix::fs::symlink(target, link).expect("a link");
    }

    #[test]
    fn finds_models_in_every_place_once_each() {
        let root = tempfile::tempdir().expect("a folder");
        let models = root.path().join("models");
        let cache = root.path().join("hub");
        let tiny = shared_model("llama-2-tiny-random.gguf");
        let smol = shared_model("SmolLM2-135M-Instruct.Q4_1.gguf");
        // The folder: a model, the same model again under another name, a model in a
        // subfolder, a split model's parts, a file that is not a model and one that is not GGUF.
        link(&smol, &models.join("smol.gguf"));
        link(&smol, &models.join("zz/smol-copy.gguf"));
        link(&tiny, &models.join("family/tiny.gguf"));
        link(&tiny, &models.join("big-00001-of-00002.gguf"));
        std::fs::write(models.join("big-00002-of-00002.gguf"), b"GGUF").expect("written");
        std::fs::write(models.join("notes.txt"), b"hello").expect("written");
        std::fs::write(models.join("broken.gguf"), b"not a model").expect("written");
        // The hub cache: two snapshots of one repository with the same file, and the file the
        // folder has too under its hub name.
        let repo = cache.join("models--owner--tiny-GGUF");
        link(&tiny, &repo.join("snapshots/aaaa/tiny.gguf"));
        std::fs::copy(&tiny, root.path().join("other.gguf")).expect("copied");
        link(
            &root.path().join("other.gguf"),
            &repo.join("snapshots/bbbb/sub/smol.gguf"),
        );

        let mut library = Library::default();
        library.scan(&Sources {
            default: Some(tiny.clone()),
            models_dir: models.clone(),
            hub_cache: cache.clone(),
        });
        let listed: Vec<(&str, &Origin)> = library
            .models
            .iter()
            .map(|m| (m.id.as_str(), &m.origin))
            .collect();
        assert_eq!(
            listed,
            [
                ("llama-2-tiny-random", &Origin::Default),
                ("smol", &Origin::Folder),
                ("smol-2", &Origin::Hub("owner/tiny-GGUF".into())),
            ],
            "{:#?}",
            library.models
        );
        let smol_entry = library.find("smol").expect("listed");
        assert_eq!(
            smol_entry.size_bytes,
            std::fs::metadata(&smol).expect("a file").len()
        );
        assert_eq!(smol_entry.info.quantization.as_deref(), Some("Q4_1"));

        // A model added later is found by the next scan; one removed is gone.
        std::fs::remove_file(models.join("smol.gguf")).expect("removed");
        library.scan(&Sources {
            default: None,
            models_dir: models,
            hub_cache: cache,
        });
        let ids: Vec<&str> = library.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["big-00001-of-00002", "smol-copy", "smol"]);
    }

    #[test]
    fn a_projector_beside_a_model_gives_it_vision_and_is_no_model_itself() {
        let root = tempfile::tempdir().expect("a folder");
        let models = root.path().join("models");
        let tiny = shared_model("llama-2-tiny-random.gguf");
        let smol = shared_model("SmolLM2-135M-Instruct.Q4_1.gguf");
        // Copies: one file reached by several links is listed once.
        std::fs::create_dir_all(models.join("tiny")).expect("a folder");
        for name in ["tiny-q8.gguf", "tiny-f16.gguf"] {
            std::fs::copy(&tiny, models.join("tiny").join(name)).expect("copied");
        }
        // Two projectors: the first by name is taken.
        testkit::mmproj::write_tiny_mmproj(&models.join("tiny/mmproj-tiny-q8.gguf"), 8)
            .expect("written");
        testkit::mmproj::write_tiny_mmproj(&models.join("tiny/mmproj-tiny-f16.gguf"), 8)
            .expect("written");
        link(&smol, &models.join("smol/smol.gguf"));
        // The configured file's folder is not scanned, but its projector is found.
        let configured = root.path().join("configured");
        link(&tiny, &configured.join("model.gguf"));
        link(&smol, &configured.join("other.gguf"));
        testkit::mmproj::write_tiny_mmproj(&configured.join("mmproj-model.gguf"), 8)
            .expect("written");

        let mut library = Library::default();
        library.scan(&Sources {
            default: Some(configured.join("model.gguf")),
            models_dir: models.clone(),
            hub_cache: root.path().join("hub"),
        });
        let listed: Vec<(&str, Option<PathBuf>)> = library
            .models
            .iter()
            .map(|m| (m.id.as_str(), m.projector.clone()))
            .collect();
        assert_eq!(
            listed,
            [
                ("model", Some(configured.join("mmproj-model.gguf"))),
                ("smol", None),
                ("tiny-f16", Some(models.join("tiny/mmproj-tiny-f16.gguf"))),
                ("tiny-q8", Some(models.join("tiny/mmproj-tiny-f16.gguf"))),
            ]
        );
    }

    #[test]
    fn split_parts_after_the_first_are_not_models() {
        assert!(is_model_file(Path::new("m-00001-of-00003.gguf")));
        assert!(!is_model_file(Path::new("m-00002-of-00003.gguf")));
        assert!(is_model_file(Path::new(
            "qwen2.5-0.5b-instruct-q4_k_m.gguf"
        )));
        assert!(!is_model_file(Path::new("model.bin")));
    }
}

//! Reading manifests for `apply -f` / `delete -f` (files, directories, stdin), defaulting
//! namespaces, and turning local component paths into uploads.
//!
//! Everything is checked before anything is sent, so a manifest set with a problem anywhere
//! changes nothing on the server; all problems are reported together.

use anyhow::{anyhow, bail, Context, Result};
use edge_api::manifest::parse_documents;
use edge_api::wire::{blob_digest, MAX_BLOB_BYTES};
use edge_api::Object;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Extensions picked up from a directory, as kubectl does.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The first bytes of every WebAssembly binary, core module or component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// One manifest's text and where its relative component paths are resolved from.
#[derive(Debug)]
pub struct Source {
    /// The path as the user will recognise it (`-` shows as `<stdin>`).
    pub name: String,
    pub base_dir: PathBuf,
    pub text: String,
}

/// An object from a manifest, remembering the manifest.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub object: Object,
    pub source: String,
    pub base_dir: PathBuf,
}

/// A local component file used by one or more containers, read and digested once.
#[derive(Debug)]
pub struct LocalImage {
    /// The canonical path, so `./a.wasm` and `a.wasm` are one upload.
    pub path: PathBuf,
    pub data: Vec<u8>,
    /// The digest computed here; the server's answer is used if it differs.
    pub digest: String,
    /// (index into the loaded objects, container index) of every container using it.
    pub uses: Vec<(usize, usize)>,
}

/// Reads every `-f` argument: a file, a directory (its *.yaml/*.yml/*.json, sorted,
/// non-recursive) or `-` for `stdin` (relative paths then resolve from `cwd`).
pub fn read_sources(args: &[String], cwd: &Path, stdin: &mut dyn Read) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut stdin_used = false;
    for arg in args {
        if arg == "-" {
            if stdin_used {
                bail!("`-f -` given twice: standard input can be read only once");
            }
            stdin_used = true;
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read manifests from standard input")?;
            sources.push(Source {
                name: "<stdin>".into(),
                base_dir: cwd.to_path_buf(),
                text,
            });
            continue;
        }
        let path = cwd.join(arg);
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("the path {arg:?} does not exist or cannot be read"))?;
        if meta.is_dir() {
            let files = manifest_files(&path)?;
            if files.is_empty() {
                bail!("directory {arg:?} holds no *.yaml, *.yml or *.json manifests");
            }
            for f in files {
                let name = Path::new(arg).join(f.file_name().unwrap_or_default());
                sources.push(read_file(&f, &name.display().to_string(), &path)?);
            }
        } else {
            let base = path.parent().unwrap_or(cwd).to_path_buf();
            sources.push(read_file(&path, arg, &base)?);
        }
    }
    Ok(sources)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_file(path: &Path, name: &str, base_dir: &Path) -> Result<Source> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {name}"))?;
    Ok(Source {
        name: name.to_string(),
        base_dir: base_dir.to_path_buf(),
        text,
    })
}

/// One error for one problem, or one listing all of them.
fn combine(problems: Vec<String>) -> anyhow::Error {
    if problems.len() == 1 {
        return anyhow!("{}", problems[0]);
    }
    anyhow!(
        "{} problems in the manifests:\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}

/// Parses every document of every source, then fills namespaces: an object without one gets
/// `namespace_flag` (or `default`); one that names another namespace than an explicit `-n` is an
/// error, as in kubectl, so `-n` never silently applies elsewhere.
pub fn parse_sources(sources: &[Source], namespace_flag: Option<&str>) -> Result<Vec<Loaded>> {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for s in sources {
        match parse_documents(&s.text, &s.name) {
            Ok(objects) => loaded.extend(objects.into_iter().map(|object| Loaded {
                object,
                source: s.name.clone(),
                base_dir: s.base_dir.clone(),
            })),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let namespace = namespace_flag.unwrap_or(edge_api::DEFAULT_NAMESPACE);
    for l in &mut loaded {
        let have = l.object.meta().namespace.clone();
        if let Some(flag) = namespace_flag {
            if l.object.kind().namespaced() && !have.is_empty() && have != flag {
                problems.push(format!(
                    "{}: the namespace from the object {} ({have:?}) does not match the namespace {flag:?} given with -n; drop -n or pass -n {have}",
                    l.source,
                    l.object.key()
                ));
            }
        }
        l.object.default_namespace(namespace);
    }
    if !problems.is_empty() {
        return Err(combine(problems));
    }
    if loaded.is_empty() {
        bail!("no objects found in the given manifests");
    }
    Ok(loaded)
}

/// Puts namespaces first (stable otherwise), so one `apply -f dir` can create a namespace and
/// the objects in it; `delete -f` walks the reverse, removing namespaces last.
pub fn namespaces_first(loaded: &mut [Loaded]) {
    loaded.sort_by_key(|l| l.object.kind() != edge_api::Kind::Namespace);
}

/// The objects named by `-f` arguments (read from the files, stdin or directories), for verbs
/// that act on existing objects (`delete -f`, `scale -f`); in manifest order.
pub fn objects_from_files(files: &[String], namespace_flag: Option<&str>) -> Result<Vec<Loaded>> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let sources = read_sources(files, &cwd, &mut std::io::stdin().lock())?;
    let mut loaded = parse_sources(&sources, namespace_flag)?;
    namespaces_first(&mut loaded);
    Ok(loaded)
}

/// A component reference that names a file on this machine (not a digest, not a URL).
pub fn is_local_image(image: &str) -> bool {
    !image.is_empty() && !image.starts_with("sha256:") && !image.contains("://")
}

/// Reads every local component, checks it is WebAssembly, and rewrites the containers' images
/// to the locally computed digest. Returns the distinct files to upload.
pub fn resolve_images(loaded: &mut [Loaded]) -> Result<Vec<LocalImage>> {
    let mut images: Vec<LocalImage> = Vec::new();
    let mut by_path: BTreeMap<PathBuf, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (oi, l) in loaded.iter_mut().enumerate() {
        let key = l.object.key();
        let Some((spec, path)) = pod_spec_mut(&mut l.object) else {
            continue;
        };
        for (ci, c) in spec.containers.iter_mut().enumerate() {
            if !is_local_image(&c.image) {
                continue;
            }
            let what = format!("{}: {key}: {path}containers[{ci}].image", l.source);
            let idx = match read_component(&l.base_dir, &c.image) {
                Ok((path, data)) => match by_path.get(&path) {
                    Some(&i) => i,
                    None => {
                        let digest = blob_digest(&data);
                        images.push(LocalImage {
                            path: path.clone(),
                            data,
                            digest,
                            uses: Vec::new(),
                        });
                        by_path.insert(path, images.len() - 1);
                        images.len() - 1
                    }
                },
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    continue;
                }
            };
            images[idx].uses.push((oi, ci));
            c.image = images[idx].digest.clone();
        }
    }
    if !problems.is_empty() {
        return Err(combine(problems));
    }
    Ok(images)
}

/// Reads one component file relative to `base_dir`, returning its canonical path and bytes.
fn read_component(base_dir: &Path, image: &str) -> Result<(PathBuf, Vec<u8>), String> {
    // Drop `.` components so messages show `/app/hello.wasm`, not `/app/./hello.wasm`.
    let joined: PathBuf = base_dir
        .join(image)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let shown = if Path::new(image).is_absolute() {
        format!("{image:?}")
    } else {
        format!("{image:?} (resolved to {})", joined.display())
    };
    let path = joined
        .canonicalize()
        .map_err(|e| format!("cannot read component {shown}: {e}"))?;
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read component {shown}: {e}"))?
        .len();
    if len > MAX_BLOB_BYTES as u64 {
        return Err(format!(
            "component {shown} is {len} bytes, more than the {MAX_BLOB_BYTES}-byte upload limit"
        ));
    }
    let data = std::fs::read(&path).map_err(|e| format!("cannot read component {shown}: {e}"))?;
    if !data.starts_with(WASM_MAGIC) {
        return Err(format!(
            "{shown} is not a WebAssembly file (it does not start with the \\0asm magic bytes); build it for a wasm32-wasip1/wasip2 target"
        ));
    }
    Ok((path, data))
}

/// The pod spec an object runs (a Pod's own, a workload's template) and its field path.
pub fn pod_spec_mut(o: &mut Object) -> Option<(&mut edge_api::PodSpec, &'static str)> {
    match o {
        Object::Pod(p) => Some((&mut p.spec, "spec.")),
        Object::Deployment(d) => Some((&mut d.spec.template.spec, "spec.template.spec.")),
        Object::ReplicaSet(r) => Some((&mut r.spec.template.spec, "spec.template.spec.")),
        Object::DaemonSet(d) => Some((&mut d.spec.template.spec, "spec.template.spec.")),
        Object::Job(j) => Some((&mut j.spec.template.spec, "spec.template.spec.")),
        _ => None,
    }
}

/// Points every container using `image` at `digest` (the server's answer to the upload).
pub fn set_digest(loaded: &mut [Loaded], image: &LocalImage, digest: &str) {
    for &(oi, ci) in &image.uses {
        if let Some((spec, _)) = pod_spec_mut(&mut loaded[oi].object) {
            if let Some(c) = spec.containers.get_mut(ci) {
                c.image = digest.to_string();
            }
        }
    }
}

/// The server's own validation, run here first so a bad object stops the whole apply before
/// any upload or write.
pub fn validate_all(loaded: &[Loaded]) -> Result<()> {
    let problems: Vec<_> = loaded
        .iter()
        .filter_map(|l| {
            edge_api::validation::validate(&l.object)
                .err()
                .map(|e| format!("{}: {e}", l.source))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(combine(problems))
    }
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;

//! Pod volumes on the node, the kubelet's job done the WASI way: each volume is a host
//! directory (`pods/<uid>/volumes/<name>`, or the hostPath itself) and each volumeMount becomes
//! a preopen of it at `mountPath`. Planning is pure; `setup` does the file system work.

use crate::configsource::{ConfigData, ConfigRef, Lookup};
use crate::env::ConfigError;
use crate::sandbox::Preopen;
use edge_api::{Container, PodSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a volume's directory is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Created empty at pod start, removed with the pod.
    EmptyDir,
    HostPath(HostPathType),
    /// One file per key of a ConfigMap (`secret: false`) or a Secret.
    Projected {
        from: ConfigRef,
        optional: bool,
        secret: bool,
    },
}

/// The hostPath `type`s a directory preopen can honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check beyond what a mount needs (an existing directory).
    Unchecked,
    Directory,
    DirectoryOrCreate,
    /// File, Socket, devices...: WASI mounts directories only.
    Unsupported(String),
}

impl HostPathType {
    fn parse(t: &str) -> HostPathType {
        match t {
            "" => HostPathType::Unchecked,
            "Directory" => HostPathType::Directory,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            other => HostPathType::Unsupported(other.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub host: PathBuf,
    pub source: Source,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumePlan {
    pub volumes: Vec<PlannedVolume>,
}

/// `pods/<uid>` under `pods_root`; `None` if the uid could escape it.
pub fn pod_dir(pods_root: &Path, uid: &str) -> Option<PathBuf> {
    safe_name(uid).then(|| pods_root.join(uid))
}

/// A single path component: letters, digits, `-`, `_`, `.`, and not `.`/`..`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Where each of the pod's volumes lives on this node.
pub fn plan(pod_dir: &Path, spec: &PodSpec) -> Result<VolumePlan, ConfigError> {
    let mut volumes = Vec::new();
    for v in &spec.volumes {
        if !safe_name(&v.name) {
            return Err(ConfigError(format!(
                "volume name {:?} is not valid",
                v.name
            )));
        }
        let own = pod_dir.join("volumes").join(&v.name);
        let (host, source) = match (&v.empty_dir, &v.host_path, &v.config_map, &v.secret) {
            (Some(_), None, None, None) => (own, Source::EmptyDir),
            (None, Some(h), None, None) => {
                if !h.path.starts_with('/') {
                    return Err(ConfigError(format!(
                        "volume {}: hostPath {:?} is not absolute",
                        v.name, h.path
                    )));
                }
                (
                    PathBuf::from(&h.path),
                    Source::HostPath(HostPathType::parse(&h.type_)),
                )
            }
            (None, None, Some(cm), None) => (
                own,
                Source::Projected {
                    from: ConfigRef::configmap(&cm.name),
                    optional: cm.optional,
                    secret: false,
                },
            ),
            (None, None, None, Some(s)) => (
                own,
                Source::Projected {
                    from: ConfigRef::secret(&s.secret_name),
                    optional: s.optional,
                    secret: true,
                },
            ),
            _ => {
                return Err(ConfigError(format!(
                    "volume {}: set exactly one of emptyDir, hostPath, configMap, secret",
                    v.name
                )))
            }
        };
        volumes.push(PlannedVolume {
            name: v.name.clone(),
            host,
            source,
        });
    }
    Ok(VolumePlan { volumes })
}

/// The preopens of container `c`: one per volumeMount. ConfigMap/Secret volumes are always
/// read-only, as in Kubernetes: their files are the agent's to update.
pub fn preopens(plan: &VolumePlan, c: &Container) -> Result<Vec<Preopen>, ConfigError> {
    c.volume_mounts
        .iter()
        .map(|m| {
            let v = plan
                .volumes
                .iter()
                .find(|v| v.name == m.name)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "volumeMount {}: no volume named {:?} in the pod",
                        m.mount_path, m.name
                    ))
                })?;
            let projected = matches!(v.source, Source::Projected { .. });
            Ok(Preopen {
                host: v.host.clone(),
                guest: m.mount_path.clone(),
                read_only: m.read_only || projected,
            })
        })
        .collect()
}

/// The files a projected volume should hold now; `None` to leave it as it is (an optional
/// source that cannot be looked up right now).
pub fn projection(
    namespace: &str,
    from: &ConfigRef,
    optional: bool,
    data: &ConfigData,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
    let kind = from.kind.word();
    match data.get(from) {
        Some(Lookup::Found(map)) => {
            if let Some(bad) = map.keys().find(|k| !safe_name(k)) {
                return Err(ConfigError(format!(
                    "{kind} {namespace}/{}: key {bad:?} cannot be a file name",
                    from.name
                )));
            }
            Ok(Some(map.clone()))
        }
        Some(Lookup::Missing) if optional => Ok(Some(BTreeMap::new())),
        Some(Lookup::Missing) => Err(ConfigError(format!("{kind} \"{}\" not found", from.name))),
        Some(Lookup::Unavailable(_)) if optional => Ok(None),
        Some(Lookup::Unavailable(why)) => Err(ConfigError(why.clone())),
        None => Err(ConfigError(format!(
            "{kind} \"{}\" was not looked up (agent bug)",
            from.name
        ))),
    }
}

/// Creates or checks every volume directory and writes projected files. Idempotent: it runs
/// before each container (re)start and when ConfigMaps/Secrets are refreshed.
pub fn setup(plan: &VolumePlan, namespace: &str, data: &ConfigData) -> Result<(), ConfigError> {
    for v in &plan.volumes {
        let io = |what: &str, e: std::io::Error| {
            ConfigError(format!(
                "volume {}: {what} {}: {e}",
                v.name,
                v.host.display()
            ))
        };
        match &v.source {
            Source::EmptyDir => {
                std::fs::create_dir_all(&v.host).map_err(|e| io("cannot create", e))?
            }
            Source::HostPath(t) => check_host_path(&v.name, &v.host, t)?,
            Source::Projected {
                from,
                optional,
                secret,
            } => {
                let files = projection(namespace, from, *optional, data)?;
                std::fs::create_dir_all(&v.host).map_err(|e| io("cannot create", e))?;
                set_mode(&v.host, if *secret { 0o700 } else { 0o755 });
                if let Some(files) = files {
                    project(&v.host, &files, *secret).map_err(|e| io("cannot write", e))?;
                }
            }
        }
    }
    Ok(())
}

fn check_host_path(name: &str, path: &Path, t: &HostPathType) -> Result<(), ConfigError> {
    let shown = path.display();
    match t {
        HostPathType::Unsupported(t) => Err(ConfigError(format!(
            "volume {name}: hostPath type {t} is not supported: components mount directories only (use Directory or DirectoryOrCreate)"
        ))),
        HostPathType::DirectoryOrCreate => std::fs::create_dir_all(path)
            .map_err(|e| ConfigError(format!("volume {name}: cannot create hostPath {shown}: {e}"))),
        HostPathType::Unchecked | HostPathType::Directory => match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(ConfigError(format!(
                "volume {name}: hostPath {shown} is not a directory"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError(format!(
                "volume {name}: hostPath {shown} does not exist on this node"
            ))),
            Err(e) => Err(ConfigError(format!("volume {name}: hostPath {shown}: {e}"))),
        },
    }
}

/// Makes `dir` hold exactly `files`: changed files are replaced atomically (write aside, then
/// rename), unchanged ones are not rewritten (flash wear), files of removed keys are deleted.
fn project(dir: &Path, files: &BTreeMap<String, Vec<u8>>, secret: bool) -> std::io::Result<()> {
    for (key, bytes) in files {
        let path = dir.join(key);
        if std::fs::read(&path).is_ok_and(|old| &old == bytes) {
            continue;
        }
        // '#' is not allowed in keys, so this name cannot collide with a key.
        let tmp = dir.join(format!(".#{key}.tmp"));
        write_private(&tmp, bytes, if secret { 0o600 } else { 0o644 })?;
        std::fs::rename(&tmp, &path)?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let keep = name.to_str().is_some_and(|n| files.contains_key(n));
        if !keep && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Creates the file with its final mode from the start, so a secret is never world-readable.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    // A leftover from a crash may have another mode: start from a fresh file.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    // The mode given at creation is masked by the umask (which can only remove bits).
    set_mode(path, mode);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Removes everything the pod had on this node (emptyDirs, projected files).
pub fn remove_pod_dir(pods_root: &Path, uid: &str) {
    if let Some(dir) = pod_dir(pods_root, uid) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove pod volumes"),
        }
    }
}

/// Removes pod directories of pods not in `keep` (uids), left from pods deleted while the
/// agent was down.
pub fn remove_orphans(pods_root: &Path, keep: &std::collections::HashSet<&str>) {
    let Ok(entries) = std::fs::read_dir(pods_root) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(uid) = entry.file_name().to_str() {
            if !keep.contains(uid) {
                remove_pod_dir(pods_root, uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::pod::{Volume, VolumeMount};
    use edge_api::workload::{ConfigMapSource, EmptyDirSource, HostPathSource, SecretSource};

    fn spec() -> PodSpec {
        let vol = |name: &str| Volume {
            name: name.into(),
            ..Default::default()
        };
        PodSpec {
            volumes: vec![
                Volume {
                    empty_dir: Some(EmptyDirSource::default()),
                    ..vol("scratch")
                },
                Volume {
                    host_path: Some(HostPathSource {
                        path: "/srv/data".into(),
                        type_: "Directory".into(),
                    }),
                    ..vol("data")
                },
                Volume {
                    config_map: Some(ConfigMapSource {
                        name: "app".into(),
                        optional: false,
                    }),
                    ..vol("cfg")
                },
                Volume {
                    secret: Some(SecretSource {
                        secret_name: "tls".into(),
                        optional: true,
                    }),
                    ..vol("certs")
                },
            ],
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only,
        }
    }

    #[test]
    fn plan_places_volumes_and_mounts_become_preopens() {
        let root = Path::new("/var/lib/edge/pods");
        let dir = pod_dir(root, "u-1").unwrap();
        let plan = plan(&dir, &spec()).unwrap();
        let hosts: Vec<_> = plan.volumes.iter().map(|v| v.host.clone()).collect();
        assert_eq!(
            hosts,
            [
                PathBuf::from("/var/lib/edge/pods/u-1/volumes/scratch"),
                PathBuf::from("/srv/data"),
                PathBuf::from("/var/lib/edge/pods/u-1/volumes/cfg"),
                PathBuf::from("/var/lib/edge/pods/u-1/volumes/certs"),
            ]
        );
        assert_eq!(
            plan.volumes[1].source,
            Source::HostPath(HostPathType::Directory)
        );
        let c = Container {
            volume_mounts: vec![
                mount("scratch", "/tmp", false),
                mount("data", "/data", true),
                mount("cfg", "/etc/app", false),
            ],
            ..Default::default()
        };
        let p = preopens(&plan, &c).unwrap();
        let got: Vec<_> = p.iter().map(|p| (p.guest.as_str(), p.read_only)).collect();
        assert_eq!(got, [("/tmp", false), ("/data", true), ("/etc/app", true)]);
        let bad = Container {
            volume_mounts: vec![mount("nope", "/x", false)],
            ..Default::default()
        };
        assert!(preopens(&plan, &bad).unwrap_err().0.contains("nope"));
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(pod_dir(Path::new("/p"), "../etc").is_none());
        assert!(pod_dir(Path::new("/p"), "").is_none());
        let mut s = spec();
        s.volumes[0].name = "../x".into();
        assert!(plan(Path::new("/p/u"), &s).is_err());
        let mut d = ConfigData::new();
        let r = ConfigRef::configmap("app");
        d.insert(
            r.clone(),
            Lookup::Found(BTreeMap::from([("../x".to_string(), vec![])])),
        );
        assert!(projection("ns", &r, false, &d).is_err());
    }

    #[test]
    fn projection_rules() {
        let mut d = ConfigData::new();
        let gone = ConfigRef::secret("gone");
        let off = ConfigRef::configmap("off");
        d.insert(gone.clone(), Lookup::Missing);
        d.insert(off.clone(), Lookup::Unavailable("unreachable".into()));
        assert_eq!(projection("ns", &gone, true, &d), Ok(Some(BTreeMap::new())));
        assert_eq!(
            projection("ns", &gone, false, &d).unwrap_err().0,
            "secret \"gone\" not found"
        );
        assert_eq!(projection("ns", &off, true, &d), Ok(None));
        assert!(projection("ns", &off, false, &d).is_err());
    }

    #[test]
    fn setup_writes_files_and_checks_host_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pods/u1");
        let mut s = spec();
        s.volumes[1].host_path = Some(HostPathSource {
            path: tmp.path().join("missing").display().to_string(),
            type_: String::new(),
        });
        let plan = plan(&dir, &s).unwrap();
        let mut d = ConfigData::new();
        let files = BTreeMap::from([("a.conf".to_string(), b"x=1".to_vec())]);
        d.insert(ConfigRef::configmap("app"), Lookup::Found(files));
        d.insert(ConfigRef::secret("tls"), Lookup::Missing);
        let e = setup(&plan, "ns", &d).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
        std::fs::create_dir_all(tmp.path().join("missing")).unwrap();
        setup(&plan, "ns", &d).unwrap();
        let cfg = dir.join("volumes/cfg");
        assert_eq!(std::fs::read(cfg.join("a.conf")).unwrap(), b"x=1");
        assert!(dir.join("volumes/scratch").is_dir());
        let files = BTreeMap::from([("b.conf".to_string(), b"y".to_vec())]);
        d.insert(ConfigRef::configmap("app"), Lookup::Found(files));
        setup(&plan, "ns", &d).unwrap();
        assert!(!cfg.join("a.conf").exists());
        assert_eq!(std::fs::read(cfg.join("b.conf")).unwrap(), b"y");
        remove_pod_dir(&tmp.path().join("pods"), "u1");
        assert!(!dir.exists());
    }
}

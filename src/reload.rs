//! Live registration: the gateway that serves requests is replaced by a rebuilt one when a
//! descriptor file or the config file changes (`descriptors.watch = true`), on SIGHUP, or on
//! the admin listener's `POST /reload` — with no restart and no request lost.
//!
//! Each request takes the current [`Gateway`] once, when it arrives, and keeps it to the end:
//! a route index, a transcoder and an upstream always come from the same table. A reload
//! builds a whole new gateway beside the old one and swaps it in with one atomic store, so the
//! requests in flight finish on the old table and the next ones use the new. A reload that
//! fails — a corrupt descriptor file, a config with an error — changes nothing: the problems
//! are logged and the last good gateway keeps serving (all or nothing).
//!
//! What a rebuilt gateway takes over from the old one — the observer, the stream count, the
//! drain flag, and unless their sections changed the upstream connections and the policies
//! with their rate-limit counters — is decided in [`Gateway::rebuild`]. The settings of the
//! listener and its layers (`listen`, `admin_listen`, `tls`, `cors`, `compression`, `limits`,
//! `drain_timeout`, `request_id`, `access_log`, `tracing`, `descriptors.watch`) are read once at
//! start: a reload keeps their old values and logs that they take effect at restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::config::Config;
use crate::gateway::{BuildError, Gateway};

/// How long the watched files must stay quiet before a reload: a copy or an editor's save is
/// several events, and a half-written file should not be loaded (if it is, the next event
/// loads it again whole).
const QUIET_PERIOD: Duration = Duration::from_millis(200);

/// Reads the configuration again: the config file with the command line's overrides.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// The gateway serving requests now, and how to build the next one.
pub struct Live {
    current: ArcSwap<Gateway>,
    /// The configuration the current gateway was built from. Locked for the whole of a
    /// reload, so reloads never interleave.
    config: Mutex<Config>,
    /// Where a changed configuration comes from; without one a reload re-reads the
    /// descriptors only.
    source: Option<ConfigSource>,
    /// Descriptor sets newly fetched from server reflection, for the next reload (kept only
    /// if it succeeds).
    fetched: Mutex<Option<Vec<crate::config::ReflectedSet>>>,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// A descriptor file was added, changed or removed.
    Descriptors,
    /// The config file changed, SIGHUP, or `POST /reload`: the configuration is read again
    /// (and with it the descriptors).
    Config,
}

/// A reload that changed nothing, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file could not be read or parsed.
    #[error("{0}")]
    Config(String),
    /// The gateway could not be built from it.
    #[error("{}", join(.0))]
    Build(Vec<BuildError>),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Routes in the new table.
    pub routes: usize,
    /// Services that now have routes and had none.
    pub added: Vec<String>,
    /// Services that had routes and now have none.
    pub removed: Vec<String>,
}

impl Live {
    /// Serves `gateway`, built from `config`. Without a [`ConfigSource`], a reload re-reads
    /// the descriptors only.
    pub fn new(gateway: Gateway, config: Config) -> Arc<Live> {
        Live::build(gateway, config, None)
    }

    /// As [`Live::new`], with where a reload reads the configuration from.
    pub fn with_source(gateway: Gateway, config: Config, source: ConfigSource) -> Arc<Live> {
        Live::build(gateway, config, Some(source))
    }

    fn build(gateway: Gateway, config: Config, source: Option<ConfigSource>) -> Arc<Live> {
        let (current, config, fetched) = (ArcSwap::from_pointee(gateway), Mutex::new(config), Mutex::new(None));
        Arc::new(Live { current, config, source, fetched })
    }

    /// The gateway serving requests now. A request keeps the one it got to its end.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Builds a new gateway and swaps it in; on any problem, logs it and keeps the current
    /// one. The building (descriptor parsing, `.proto` compiling) runs off the request
    /// threads.
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let live = self.clone();
        let outcome = tokio::task::spawn_blocking(move || live.reload_now(trigger))
            .await
            .unwrap_or_else(|e| Err(ReloadError::Config(format!("the reload did not finish: {e}"))));
        let gateway = self.gateway();
        let metrics = gateway.observer().metrics();
        match (&outcome, trigger) {
            (Ok(reloaded), _) => {
                let cause = match trigger {
                    Trigger::Descriptors => "descriptor files changed",
                    Trigger::Config => "configuration read again",
                };
                tracing::info!(
                    "reloaded ({cause}): {} routes; services added: [{}], removed: [{}]",
                    reloaded.routes,
                    reloaded.added.join(", "),
                    reloaded.removed.join(", ")
                );
                if trigger == Trigger::Config {
                    metrics.config_reloaded(true);
                }
            }
            (Err(e), Trigger::Descriptors) => {
                metrics.descriptors_loaded(false);
                tracing::error!("descriptor change ignored, the last good routes keep serving: {e}");
            }
            (Err(e), Trigger::Config) => {
                metrics.config_reloaded(false);
                tracing::error!("configuration change ignored, the last good one keeps serving: {e}");
            }
        }
        outcome
    }

    /// The reload itself, blocking.
    fn reload_now(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let mut config = self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = match (&self.source, trigger) {
            (Some(source), Trigger::Config) => {
                let mut read = source().map_err(ReloadError::Config)?;
                // What reflection fetched is not in the file.
                read.reflected = config.reflected.clone();
                read
            }
            _ => config.clone(),
        };
        if let Some(sets) = self.fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            next.reflected = sets;
        }
        for key in keep_restart_only(&config, &mut next) {
            tracing::warn!("`{key}` changed: it takes effect when the gateway restarts");
        }
        let current = self.gateway();
        let rebuilt = current.rebuild(&next, &config).map_err(ReloadError::Build)?;
        for warning in rebuilt.warnings() {
            tracing::warn!("{warning}");
        }
        let reloaded = Reloaded::between(&current, &rebuilt);
        self.current.store(Arc::new(rebuilt));
        *config = next;
        Ok(reloaded)
    }

    /// The descriptor paths and the config file a watcher should follow.
    fn watched(&self, config_file: Option<&Path>) -> Vec<(PathBuf, Trigger)> {
        let config = self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let descriptors = config.descriptors.paths.iter().map(|p| (p.clone(), Trigger::Descriptors));
        descriptors.chain(config_file.map(|p| (p.to_owned(), Trigger::Config))).collect()
    }
}

impl Reloaded {
    fn between(old: &Gateway, new: &Gateway) -> Reloaded {
        let (before, after) = (services(old), services(new));
        Reloaded {
            routes: new.table().routes().len(),
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        }
    }
}

fn services(gateway: &Gateway) -> BTreeSet<String> {
    gateway.table().routes().iter().map(|r| r.method.parent_service().full_name().to_owned()).collect()
}

/// Puts back into `next` the settings read only at start, naming those that changed.
fn keep_restart_only(current: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if current.$($field).+ != next.$($field).+ {
                changed.push($name);
                next.$($field).+ = current.$($field).+.clone();
            }
        };
    }
    keep!(listen, "listen");
    keep!(admin_listen, "admin_listen");
    keep!(tls, "tls");
    keep!(cors, "cors");
    keep!(compression, "compression");
    keep!(limits, "limits");
    keep!(drain_timeout, "drain_timeout");
    keep!(shutdown_delay, "shutdown_delay");
    keep!(log, "log");
    keep!(request_id, "request_id");
    keep!(access_log, "access_log");
    keep!(tracing, "tracing");
    keep!(descriptors.watch, "descriptors.watch");
    changed
}

fn join(errors: &[BuildError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

// === server reflection ===

/// Fetches the descriptors of the upstreams that serve them by reflection every
/// `[descriptors] reflection_interval`, reloading when what they serve changed. A fetch that
/// fails keeps what was fetched before. Runs until `live` is dropped; nothing to do without
/// such upstreams.
pub fn follow_reflection(live: &Arc<Live>) {
    let weak = Arc::downgrade(live);
    tokio::spawn(async move {
        loop {
            let (interval, upstreams, current) = {
                let Some(live) = weak.upgrade() else { return };
                let config = live.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let upstreams: Vec<_> = config.reflection_upstreams().cloned().collect();
                (config.descriptors.reflection_interval, upstreams, config.reflected.clone())
            };
            tokio::time::sleep(interval).await;
            if upstreams.is_empty() {
                continue;
            }
            let fetched = crate::descriptors::reflection::fetch_all(&upstreams, &current).await;
            let Some(live) = weak.upgrade() else { return };
            if fetched != current {
                *live.fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fetched);
                // Logged and counted by `reload`; what was served stays served on failure.
                let _ = live.reload(Trigger::Descriptors).await;
            }
        }
    });
}

// === watching files ===

/// Follows the descriptor paths and `config_file` (when given): a change reloads the gateway
/// once the files have been quiet for a moment. Runs until `live` is dropped. Paths that do
/// not exist yet are followed through their directory.
pub fn watch(live: &Arc<Live>, config_file: Option<&Path>) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Trigger>(64);
    let targets: Vec<Target> = live.watched(config_file).into_iter().map(|(p, t)| Target::new(&p, t)).collect();
    let filter = targets.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let trigger = filter.iter().filter(|t| event.paths.iter().any(|p| t.covers(p))).map(|t| t.trigger).max();
        // Full means a reload is pending already; it will see this change too.
        if let Some(trigger) = trigger {
            let _ = tx.try_send(trigger);
        }
    })
    .map_err(|e| format!("cannot watch files: {e}"))?;
    let mut watching = BTreeSet::new();
    for target in &targets {
        if watching.insert((target.watch.clone(), target.mode_is_recursive())) {
            watcher.watch(&target.watch, target.mode()).map_err(|e| format!("{}: {e}", target.watch.display()))?;
        }
    }
    let live = Arc::downgrade(live);
    let mut last = fingerprint(&targets);
    tokio::spawn(async move {
        // Dropped with the task: the watcher stops with it.
        let _watcher = watcher;
        while let Some(mut trigger) = rx.recv().await {
            loop {
                match tokio::time::timeout(QUIET_PERIOD, rx.recv()).await {
                    Ok(Some(more)) => trigger = trigger.max(more),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // Events say something moved; the content says whether anything changed.
            let watched = targets.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&watched)).await else { return };
            if now == last {
                continue;
            }
            last = now;
            let Some(live) = Weak::upgrade(&live) else { return };
            let _ = live.reload(trigger).await;
        }
    });
    Ok(())
}

/// What the watched paths hold now, as one number. A reload follows a change of content, not
/// every event: a Kubernetes ConfigMap update is a burst of renames of `..data` links around
/// files whose content changed once, and an editor's save touches files it does not change.
fn fingerprint(targets: &[Target]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    for target in targets {
        match &target.file {
            Some(file) => std::fs::read(file).ok().hash(&mut hasher),
            None => hash_tree(&target.watch, 0, &mut hasher),
        }
    }
    hasher.finish()
}

/// The names and contents under `dir`, links followed, hidden entries (`..data`, editors'
/// swap files) skipped as the descriptor loader skips them.
fn hash_tree(dir: &Path, depth: usize, hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    // Deep enough for any layout; a link loop ends here.
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        path.hash(hasher);
        if path.is_dir() {
            hash_tree(&path, depth + 1, hasher);
        } else {
            std::fs::read(&path).ok().hash(hasher);
        }
    }
}

/// One watched path: a directory (and everything under it), or one file seen through the
/// directory that holds it — editors replace a file by renaming another over it, and a
/// Kubernetes ConfigMap swaps the `..data` link the file points through, which a watch on the
/// file itself would miss. Any event in that directory counts; [`fingerprint`] then tells
/// whether the file changed.
#[derive(Debug, Clone)]
struct Target {
    /// What is given to the watcher.
    watch: PathBuf,
    /// The file, when the target is one file.
    file: Option<PathBuf>,
    trigger: Trigger,
}

impl Target {
    fn new(path: &Path, trigger: Trigger) -> Target {
        if let Ok(dir) = path.canonicalize()
            && dir.is_dir()
        {
            return Target { watch: dir, file: None, trigger };
        }
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let parent = parent.canonicalize().unwrap_or(parent);
        let file = path.file_name().map(|name| parent.join(name));
        Target { watch: parent, file, trigger }
    }

    fn covers(&self, path: &Path) -> bool {
        match &self.file {
            Some(_) => path.parent() == Some(self.watch.as_path()),
            None => path.starts_with(&self.watch),
        }
    }

    fn mode_is_recursive(&self) -> bool {
        self.file.is_none()
    }

    fn mode(&self) -> RecursiveMode {
        if self.mode_is_recursive() { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_at_start_are_kept_and_named() {
        let current = Config::default();
        let mut next = Config { compression: !current.compression, max_body_bytes: 1, ..Default::default() };
        next.descriptors.watch = true;
        let changed = keep_restart_only(&current, &mut next);
        assert_eq!(changed, ["compression", "descriptors.watch"]);
        assert_eq!(next.compression, current.compression);
        assert!(!next.descriptors.watch);
        // Everything else is taken from the new configuration.
        assert_eq!(next.max_body_bytes, 1);
    }

    #[test]
    fn a_file_target_covers_its_directory_and_a_directory_everything_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let directory = Target::new(&root, Trigger::Descriptors);
        assert!(directory.covers(&root.join("a/b.binpb")));
        assert_eq!(directory.mode(), RecursiveMode::Recursive);
        let file = Target::new(&root.join("gateway.toml"), Trigger::Config);
        assert_eq!(file.watch, root);
        assert!(file.covers(&root.join("gateway.toml")));
        assert!(file.covers(&root.join("..data")), "a ConfigMap's link swap");
        assert!(!file.covers(&root.join("sub/gateway.toml")));
        assert_eq!(file.mode(), RecursiveMode::NonRecursive);
    }
}

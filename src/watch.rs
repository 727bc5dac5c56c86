//! The file watcher: reloads when the config file or a file it includes
//! (consumer files and the directories of their glob patterns,
//! certificates, keys, CA bundles) changes.
//!
//! It watches the *directories* holding those files, not the files: an
//! editor that writes a new file and renames it over the old one, or a
//! Kubernetes ConfigMap volume that swaps its `..data` symlink, replaces the
//! file a watch on the file itself would follow. An event counts when it
//! names a watched file, matches a consumer glob, or names a `..`-prefixed
//! entry (the ConfigMap swap). Reads (ours included) never count.
//!
//! Events are debounced: the reload runs once things have been quiet for
//! [`DEBOUNCE`], and at the latest [`MAX_DELAY`] after the first event,
//! but never while a watched file written to is still open for writing
//! (inotify reports the close), up to [`WRITE_WAIT`]: a writer that pauses
//! mid-file longer than the debounce does not get its half applied. A
//! file caught half-written anyway fails prepare like any broken file, or
//! is refused when it drops every route or consumer (the old config keeps
//! serving), and the write that completes it triggers again.
//! After every reload the watched set is recomputed from the config now
//! serving, so newly included files are watched too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::gateway::Gateway;

/// Quiet time after the last event before the reload runs.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest time from the first event to the reload, however busy the
/// files, when none is open for writing.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Longest wait for a file written to but not closed yet (a writer that
/// pauses mid-file); then the reload runs anyway.
pub const WRITE_WAIT: Duration = Duration::from_secs(30);

/// What the watcher looks at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Directories watched (non-recursively).
    pub dirs: BTreeSet<PathBuf>,
    /// Files whose events count: as named, and where their symlinks lead.
    pub files: BTreeSet<PathBuf>,
    /// Consumer-file glob patterns.
    pub globs: Vec<glob::Pattern>,
}

impl Watched {
    /// The set for the config file at `config_path`, whose content is
    /// `config` (the one serving).
    pub fn of(config_path: &Path, config: &Config) -> Watched {
        let mut w = Watched::default();
        w.add_file(config_path);
        for f in crate::material::files(config) {
            w.add_file(f);
        }
        for f in &config.consumer_files {
            w.add_file(Path::new(f));
        }
        for pattern in &config.consumer_globs {
            if let Some(dir) = pattern.parent() {
                w.dirs.insert(absolute(dir));
            }
            if let Ok(p) = glob::Pattern::new(&absolute(pattern).to_string_lossy()) {
                w.globs.push(p);
            }
        }
        w
    }

    fn add_file(&mut self, path: &Path) {
        let path = absolute(path);
        if let Some(dir) = path.parent() {
            self.dirs.insert(dir.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(&path) {
            if let Some(dir) = real.parent() {
                self.dirs.insert(dir.to_path_buf());
            }
            self.files.insert(real);
        }
        self.files.insert(path);
    }

    /// Whether an event of `kind` on `paths` may change the config.
    pub fn counts(&self, kind: &EventKind, paths: &[PathBuf]) -> bool {
        use notify::event::{AccessKind, AccessMode};
        let writes = match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        writes
            && paths.iter().any(|p| {
                self.files.contains(p)
                    || p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".."))
                    || self.globs.iter().any(|g| g.matches_path(p))
            })
    }
}

/// `path` made absolute against the working directory, without resolving
/// symlinks (events name paths as watched).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Start watching for `gateway`'s config: the watches are in place when
/// this returns (so an edit made after it is never missed); the events are
/// handled on a thread of their own, for the life of the process.
pub fn spawn(gateway: Arc<Gateway>) -> std::io::Result<()> {
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver lives as long as the thread; nothing to do if not.
        let _ = tx.send(event);
    })
    .map_err(std::io::Error::other)?;
    let watched = Watched::of(gateway.config_path(), &gateway.snapshot().config);
    rewatch(&mut watcher, &Watched::default(), &watched);
    std::thread::Builder::new()
        .name("portcullis-watch".into())
        .spawn(move || run(gateway, watcher, rx, watched))?;
    Ok(())
}

fn run(
    gateway: Arc<Gateway>,
    mut watcher: notify::RecommendedWatcher,
    rx: Receiver<notify::Result<notify::Event>>,
    mut watched: Watched,
) {
    loop {
        if !wait_for_change(&rx, &watched) {
            return;
        }
        // Errors are logged and counted by the reload; the old config serves.
        match gateway.reload_blocking("file watch", false) {
            Ok(report) if report.unchanged() => debug!("file change left the config as it was"),
            Ok(_) | Err(_) => {}
        }
        // The config now serving may include other files.
        let wanted = Watched::of(gateway.config_path(), &gateway.snapshot().config);
        rewatch(&mut watcher, &watched, &wanted);
        watched = wanted;
    }
}

/// Watch the directories of `wanted` that `current` does not, unwatch the
/// others.
fn rewatch(watcher: &mut notify::RecommendedWatcher, current: &Watched, wanted: &Watched) {
    for dir in current.dirs.difference(&wanted.dirs) {
        let _ = watcher.unwatch(dir);
    }
    for dir in wanted.dirs.difference(&current.dirs) {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => info!(dir = %dir.display(), "watching for config changes"),
            Err(e) => warn!(dir = %dir.display(), error = %e, "cannot watch for config changes"),
        }
    }
}

/// Block until an event that counts, then until things are quiet and no
/// watched file is still open for writing. False when the watcher is gone.
fn wait_for_change(rx: &Receiver<notify::Result<notify::Event>>, watched: &Watched) -> bool {
    let counts = |event: &notify::Result<notify::Event>| match event {
        Ok(e) if watched.counts(&e.kind, &e.paths) => Some(e.clone()),
        Ok(_) => None,
        Err(e) => {
            warn!(error = %e, "config watcher error");
            None
        }
    };
    let mut writes = Writes::default();
    loop {
        match rx.recv() {
            Ok(event) => {
                if let Some(e) = counts(&event) {
                    writes.track(&e);
                    break;
                }
            }
            Err(_) => return false,
        }
    }
    let first = Instant::now();
    loop {
        let waited = first.elapsed();
        // A file still being written is waited for, up to WRITE_WAIT.
        let limit = if writes.open.is_empty() {
            MAX_DELAY
        } else {
            WRITE_WAIT
        };
        let left = limit.saturating_sub(waited);
        if left.is_zero() {
            if !writes.open.is_empty() {
                warn!(files = ?writes.open, "a config file stayed open for writing; reloading anyway");
            }
            return true;
        }
        match rx.recv_timeout(DEBOUNCE.min(left)) {
            Ok(event) => {
                if let Some(e) = counts(&event) {
                    writes.track(&e);
                }
            }
            Err(RecvTimeoutError::Timeout) if writes.open.is_empty() => return true,
            Err(RecvTimeoutError::Timeout) => {
                debug!(files = ?writes.open, "a config file is still open for writing: waiting");
            }
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Watched files written to and not closed yet: a writer that pauses
/// mid-file (longer than the debounce) must not have its half applied.
#[derive(Debug, Default)]
struct Writes {
    open: BTreeSet<PathBuf>,
}

impl Writes {
    fn track(&mut self, event: &notify::Event) {
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        match event.kind {
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => {
                self.open.extend(event.paths.iter().cloned());
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_) => {
                for p in &event.paths {
                    self.open.remove(p);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};

    #[test]
    fn counts_writes_to_watched_files_swaps_and_globs_only() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("portcullis.toml");
        std::fs::create_dir(dir.path().join("consumers.d")).unwrap();
        let src = "consumer_files = [\"consumers.d/*.toml\"]\n";
        std::fs::write(&main, src).unwrap();
        let config = crate::config::load(&main).unwrap();
        let w = Watched::of(&main, &config);
        let real_dir = std::fs::canonicalize(dir.path()).unwrap();
        assert!(w.dirs.contains(&real_dir) || w.dirs.contains(dir.path()));
        assert!(w.dirs.iter().any(|d| d.ends_with("consumers.d")));

        let write = EventKind::Modify(ModifyKind::Any);
        let at = |p: &str| vec![dir.path().join(p)];
        assert!(w.counts(&write, &at("portcullis.toml")));
        assert!(w.counts(&EventKind::Create(CreateKind::File), &at("..data")));
        assert!(w.counts(&write, &at("consumers.d/new.toml")));
        assert!(!w.counts(&write, &at("consumers.d/new.txt")));
        assert!(!w.counts(&write, &at("access.log")));
        assert!(!w.counts(&write, &at(".portcullis.toml.swp")));
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!w.counts(&read, &at("portcullis.toml")));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(w.counts(&closed, &at("portcullis.toml")));
    }
}

//! Solution versions, reloads and the draft/live mode of a solution (`docs/releasing.md`).
//!
//! **Versions.** A solution's version is a content hash of its folder: SHA-256 over the sorted
//! relative paths and contents of every file, except hidden entries (names starting with `.`,
//! such as `.git`) and the top-level `tests/` folder (test cases do not change what the
//! solution does). Its id is the first 16 hex digits. When the folder is inside a git
//! checkout, the version also carries the commit of `HEAD` and whether the folder has
//! uncommitted changes (metadata: the same content at another commit is the same version).
//! Every job records the version it was accepted with ([`ferry_store::NewJob::solution_version`]).
//!
//! **Old versions stay runnable.** Before a version serves its first event, the files the
//! loader reads (`solution.yaml`, `runbooks/*.yaml`) are stored, sealed, in the key/value
//! store (namespace `ferry:versions/<solution>`, key = version id). A job of an older version
//! runs on that version: compiled versions replaced by a reload are kept in memory, and a
//! version this process never loaded (a waiting job after a restart) is compiled again from its
//! stored files before the job runs. A version that cannot be compiled again fails its job
//! with a message naming the version and the cause — never silently on another version.
//!
//! **Reload.** [`Engine::reload`] re-reads every solution folder `ferry serve` was started
//! with. An unchanged folder stays as it is; a changed one is compiled and checked completely
//! before it replaces the old version in one atomic swap, so events are never refused or
//! dropped while reloading (an event being handled keeps the version it started with). A folder
//! that fails keeps its old version serving and reports its `file:line` problems. The reloaded
//! solution's connections and triggers are provisioned again (as at start-up) and the items that
//! no longer exist are deprovisioned; the scheduler picks up added, changed and removed
//! schedules (see [`Engine::deploy_generation`]).
//!
//! **Modes.** A solution is `live` or `draft` (deployment state, kept in the key/value store
//! under `ferry:deploy`, so it survives restarts). A draft solution's triggers accept only
//! requests carrying [`TEST_HEADER`] (`x-ferry-test: 1`), and its schedules do not fire.
//! Any event carrying the header makes a test job ([`ferry_store::JobRecord::test`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_core::loader::Diagnostic;
use ferry_store::JobRecord;
use indexmap::IndexMap;
use parking_lot::RwLock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::compile::{CompiledRunbook, CompiledSolution};
use crate::engine::Engine;
use crate::ingest::{InboundRequest, IngestOutcome};
use crate::kv::Kv;
use crate::provision::{self, ProvisionState};

/// The request header that marks an event as a test event: `x-ferry-test: 1` (or `true`).
/// A draft solution accepts only such events; on any solution they make test jobs.
pub const TEST_HEADER: &str = "x-ferry-test";

/// Key/value namespace of the stored version files, per solution.
fn versions_namespace(solution: &str) -> String {
    format!("ferry:versions/{solution}")
}

/// Key/value namespace of deployment state (modes).
const DEPLOY_NAMESPACE: &str = "ferry:deploy";

/// Length of a version id (hex digits of the content hash).
pub const VERSION_ID_LEN: usize = 16;

/// Deepest folder nesting read when hashing a solution folder.
const MAX_DEPTH: usize = 16;

/// The version of a loaded solution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SolutionVersion {
    /// The first [`VERSION_ID_LEN`] hex digits of the content hash (what jobs record).
    pub id: String,
    /// The git checkout the folder was loaded from, if any.
    pub git: Option<GitInfo>,
    /// When this process loaded it (`None` for a version compiled again from stored files,
    /// when the original time was not stored).
    pub loaded_at: Option<DateTime<Utc>>,
}

/// Where in git a version was loaded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitInfo {
    /// The commit of `HEAD` (40 hex digits).
    pub commit: String,
    /// Whether the solution folder had uncommitted changes (modified or untracked files).
    pub dirty: bool,
}

/// How a solution is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only requests with [`TEST_HEADER`] are accepted; schedules do not fire.
    Draft,
    /// Serving every request; schedules fire.
    Live,
}

impl Mode {
    /// `draft` or `live`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Draft => "draft",
            Mode::Live => "live",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        match s {
            "draft" => Some(Mode::Draft),
            "live" => Some(Mode::Live),
            _ => None,
        }
    }
}

/// The files of a solution folder that make up its version: relative path (`/`-separated)
/// → contents.
pub type SolutionFiles = BTreeMap<String, Vec<u8>>;

/// Read the files of a solution folder that its version covers: every file except hidden
/// entries (`.`-names, at any depth) and the top-level `tests/` folder.
pub fn read_files(dir: &Path) -> Result<SolutionFiles, String> {
    let mut files = SolutionFiles::new();
    walk(dir, "", 0, &mut files)?;
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, depth: usize, files: &mut SolutionFiles) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: folders nested deeper than {MAX_DEPTH} levels",
            dir.display()
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || (depth == 0 && name == "tests") {
            continue;
        }
        let path = entry.path();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // Follows symbolic links, as the loader does.
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(&path, &rel, depth + 1, files)?;
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.insert(rel, bytes);
        }
    }
    Ok(())
}

/// The full content hash (64 hex digits) of a solution's files: SHA-256 over a domain tag
/// and, in path order, each file's path and contents, both length-prefixed.
pub fn content_hash(files: &SolutionFiles) -> String {
    let mut h = Sha256::new();
    h.update(b"ferry-solution-v1\0");
    for (path, bytes) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// The version id of a solution's files.
pub fn version_id(files: &SolutionFiles) -> String {
    content_hash(files)[..VERSION_ID_LEN].to_string()
}

/// Whether a file is read by the loader (and so kept to compile the version again).
fn loader_file(path: &str) -> bool {
    path == "solution.yaml"
        || path.strip_prefix("runbooks/").is_some_and(|name| {
            !name.contains('/') && (name.ends_with(".yaml") || name.ends_with(".yml"))
        })
}

/// The git commit of `HEAD` for a folder inside a git checkout, and whether the folder has
/// uncommitted changes; `None` outside a checkout or without a `git` program.
pub fn git_info(dir: &Path) -> Option<GitInfo> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            // `git status` must not take the index lock of the user's checkout.
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "--verify", "-q", "HEAD"])?
        .trim()
        .to_string();
    if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=all", "--", "."])
        .is_none_or(|out| !out.trim().is_empty());
    Some(GitInfo { commit, dirty })
}

/// One solution's result of a reload.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadResult {
    /// The solution (as served before the reload).
    pub solution: String,
    /// Its folder.
    pub directory: PathBuf,
    /// What happened.
    pub outcome: ReloadOutcome,
}

/// What a reload did to one solution.
#[derive(Clone, Debug, PartialEq)]
pub enum ReloadOutcome {
    /// The folder's content is the version already served.
    Unchanged {
        /// The version.
        version: String,
    },
    /// A new version serves from now on.
    Reloaded {
        /// The version served before.
        from: String,
        /// The version served now.
        to: String,
    },
    /// The folder has problems: the old version keeps serving.
    Failed {
        /// The version that keeps serving.
        version: String,
        /// The problems, with `file:line` where they have one.
        errors: Vec<ReloadError>,
    },
}

/// One problem of a folder that failed to reload.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadError {
    /// The file, when the problem has a place.
    pub file: Option<PathBuf>,
    /// Its 1-based line.
    pub line: Option<usize>,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: {}", file.display(), self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl From<Diagnostic> for ReloadError {
    fn from(d: Diagnostic) -> Self {
        ReloadError {
            file: Some(d.span.file),
            line: Some(d.span.line),
            message: d.message,
        }
    }
}

impl ReloadError {
    fn plain(message: impl Into<String>) -> Self {
        ReloadError {
            file: None,
            line: None,
            message: message.into(),
        }
    }
}

/// Why a mode could not be changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// No such solution.
    #[error("solution '{0}' not found")]
    NotFound(String),
    /// The store failed.
    #[error("saving the mode failed: {0}")]
    Store(String),
}

/// A version's metadata as stored with its files (git state, load time; what is missing or
/// unreadable is left out).
fn stored_version(id: &str, stored: &Value) -> SolutionVersion {
    SolutionVersion {
        id: id.to_string(),
        git: stored.get("git").and_then(|g| {
            Some(GitInfo {
                commit: g.get("commit")?.as_str()?.to_string(),
                dirty: g.get("dirty")?.as_bool()?,
            })
        }),
        loaded_at: stored
            .get("loaded_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// The engine's deployment state: solution folders, older compiled versions, modes.
#[derive(Default)]
pub struct Deployments {
    /// Folder of every solution loaded by [`Engine::load_dir_cached`], in load order.
    dirs: RwLock<IndexMap<String, PathBuf>>,
    /// Compiled versions that are no longer current (or were compiled again from their stored
    /// files), by (solution, version id), for the jobs that run on them.
    older: RwLock<HashMap<(String, String), Arc<CompiledSolution>>>,
    /// Why a version could not be compiled again (for the message of its jobs).
    unavailable: RwLock<HashMap<(String, String), String>>,
    /// Modes; a solution without an entry is live.
    modes: RwLock<HashMap<String, Mode>>,
    /// Bumped whenever the set of served versions changes.
    generation: AtomicU64,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// One compilation of stored files at a time.
    compiling: tokio::sync::Mutex<()>,
    /// The public URL handed to provisioning (set by [`Engine::start_provisioning`]).
    public_url: RwLock<Option<String>>,
    /// The git state of each served folder as of its last load or reload (a commit that
    /// changed no file of the folder leaves the version as it is, but shows here).
    git_now: RwLock<HashMap<String, Option<GitInfo>>>,
}

impl Deployments {
    pub(crate) fn remember_git(&self, solution: &str, git: Option<GitInfo>) {
        self.git_now.write().insert(solution.to_string(), git);
    }

    pub(crate) fn remember_dir(&self, solution: &str, dir: &Path) {
        self.dirs
            .write()
            .insert(solution.to_string(), dir.to_path_buf());
    }

    pub(crate) fn set_public_url(&self, url: &str) {
        *self.public_url.write() = Some(url.to_string());
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Read a solution folder's files for its version (a folder that cannot be read is a
    /// problem at its `solution.yaml`).
    pub(crate) fn read_for_version(dir: &Path) -> Result<SolutionFiles, Vec<Diagnostic>> {
        read_files(dir).map_err(|e| {
            vec![Diagnostic {
                span: ferry_core::model::Span::new(dir.join("solution.yaml"), 1),
                message: format!("the solution folder cannot be read: {e}"),
            }]
        })
    }

    /// The version of files read from `dir` (read before and after compiling them, and equal:
    /// the version describes exactly what was compiled).
    pub(crate) fn version_of_files(dir: &Path, files: &SolutionFiles) -> SolutionVersion {
        SolutionVersion {
            id: version_id(files),
            git: git_info(dir),
            loaded_at: Some(Utc::now()),
        }
    }

    /// Store the loader's files of a version (sealed), so that its jobs can run on it after a
    /// restart. Done before the version serves its first event.
    pub(crate) async fn store_version(
        &self,
        sol: &CompiledSolution,
        files: &SolutionFiles,
    ) -> Result<(), String> {
        let kv = Kv::new(
            self.store.as_ref(),
            &self.services.secrets,
            versions_namespace(&sol.name),
        );
        if kv.get(&sol.version.id).await.ok().flatten().is_some() {
            return Ok(());
        }
        let mut kept = serde_json::Map::new();
        for (path, bytes) in files.iter().filter(|(p, _)| loader_file(p)) {
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| format!("{path} is not UTF-8 text"))?;
            kept.insert(path.clone(), Value::String(text));
        }
        let git = sol
            .version
            .git
            .as_ref()
            .map(|g| json!({"commit": g.commit, "dirty": g.dirty}));
        let value = json!({
            "files": kept,
            "git": git,
            "loaded_at": sol.version.loaded_at.map(|t| t.to_rfc3339()),
        });
        kv.put(&sol.version.id, &value, None)
            .await
            .map_err(|e| format!("storing the files of version {}: {e}", sol.version.id))
    }

    /// The solution and runbook a job runs on: those of the version it was accepted with.
    pub(crate) fn runbook_of_job(
        &self,
        job: &JobRecord,
    ) -> Result<(Arc<CompiledSolution>, Arc<CompiledRunbook>), String> {
        let Some(current) = self.solution(&job.solution) else {
            return Err(format!(
                "Runbook '{}/{}' is not loaded; the job cannot run",
                job.solution, job.runbook
            ));
        };
        let sol = match &job.solution_version {
            None => current,
            Some(v) if &current.version.id == v => current,
            Some(v) => {
                let key = (job.solution.clone(), v.clone());
                let older = self.deploy.older.read().get(&key).cloned();
                match older {
                    Some(sol) => sol,
                    None => {
                        let why = self
                            .deploy
                            .unavailable
                            .read()
                            .get(&key)
                            .cloned()
                            .unwrap_or_else(|| {
                                "it is not loaded and its files are not stored".into()
                            });
                        return Err(format!(
                            "Version {v} of solution '{}' is not available ({why}); the job cannot run on it",
                            job.solution
                        ));
                    }
                }
            }
        };
        let rb = sol.runbooks.get(&job.runbook).cloned().ok_or_else(|| {
            format!(
                "Runbook '{}/{}' is not part of version {} of the solution; the job cannot run",
                job.solution, job.runbook, sol.version.id
            )
        })?;
        Ok((sol, rb))
    }

    /// Make the version a job was accepted with available before the job runs: a version
    /// neither current nor kept in memory is compiled again from its stored files. A version
    /// that cannot be is logged, and its job fails naming the cause when it runs.
    pub async fn prepare_job(&self, job: &JobRecord) {
        let Some(v) = &job.solution_version else {
            return;
        };
        let key = (job.solution.clone(), v.clone());
        // Jobs of a solution that is not served any more stay unrunnable, as before versions.
        let available = || {
            self.solution(&job.solution)
                .is_none_or(|cur| &cur.version.id == v)
                || self.deploy.older.read().contains_key(&key)
        };
        if available() {
            return;
        }
        let _one = self.deploy.compiling.lock().await;
        if available() {
            return;
        }
        match self.compile_stored(&job.solution, v).await {
            Ok(sol) => {
                tracing::info!(solution = %job.solution, version = %v, "compiled an older version of the solution again from its stored files for its jobs");
                self.deploy.unavailable.write().remove(&key);
                self.deploy.older.write().insert(key, sol);
            }
            Err(why) => {
                tracing::error!(solution = %job.solution, version = %v, job = %job.id, error = %why, "the solution version of a job is not available");
                self.deploy.unavailable.write().insert(key, why);
            }
        }
    }

    /// Compile a version again from its stored files (written into a temporary folder).
    async fn compile_stored(
        &self,
        solution: &str,
        version: &str,
    ) -> Result<Arc<CompiledSolution>, String> {
        let kv = Kv::new(
            self.store.as_ref(),
            &self.services.secrets,
            versions_namespace(solution),
        );
        let stored = kv
            .get(version)
            .await
            .map_err(|e| format!("its stored files cannot be read: {e}"))?
            .ok_or_else(|| "its files are not stored".to_string())?;
        let files = stored
            .get("files")
            .and_then(Value::as_object)
            .ok_or_else(|| "its stored files are unreadable".to_string())?;
        let tmp = tempfile::Builder::new()
            .prefix("ferry-version-")
            .tempdir()
            .map_err(|e| format!("a temporary folder cannot be made: {e}"))?;
        let dir = tmp.path().join(solution);
        for (path, text) in files {
            if !loader_file(path) {
                return Err(format!("its stored files name an unexpected file '{path}'"));
            }
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&file, text.as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        }
        let (_, mut compiled) = self.compile_dir_cached(&dir).await.map_err(|diags| {
            let all: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
            format!("its stored files no longer compile: {}", all.join("; "))
        })?;
        if compiled.name != solution {
            return Err(format!(
                "its stored files declare solution '{}'",
                compiled.name
            ));
        }
        compiled.version = stored_version(version, &stored);
        Ok(Arc::new(compiled))
    }

    /// The version a solution is served with, its git state as of the last load or reload.
    pub fn served_version(&self, solution: &str) -> Option<SolutionVersion> {
        let mut v = self.solution(solution)?.version.clone();
        if let Some(git) = self.deploy.git_now.read().get(solution) {
            v.git = git.clone();
        }
        Some(v)
    }

    /// What is known of a version of a solution: the current one, one kept in memory, or the
    /// metadata stored with its files.
    pub async fn version_info(&self, solution: &str, version: &str) -> Option<SolutionVersion> {
        if let Some(cur) = self.served_version(solution).filter(|c| c.id == version) {
            return Some(cur);
        }
        let key = (solution.to_string(), version.to_string());
        if let Some(old) = self.deploy.older.read().get(&key) {
            return Some(old.version.clone());
        }
        let kv = Kv::new(
            self.store.as_ref(),
            &self.services.secrets,
            versions_namespace(solution),
        );
        let stored = kv.get(version).await.ok().flatten()?;
        Some(stored_version(version, &stored))
    }

    /// Changes whenever a reload changes the served versions (the scheduler rebuilds its
    /// schedules when it does) or a mode changes.
    pub fn deploy_generation(&self) -> u64 {
        self.deploy.generation.load(Ordering::SeqCst)
    }

    /// The folder a solution was loaded from by [`Engine::load_dir_cached`].
    pub fn solution_dir(&self, solution: &str) -> Option<PathBuf> {
        self.deploy.dirs.read().get(solution).cloned()
    }

    /// How a solution is served (`Live` unless it was put in draft).
    pub fn mode(&self, solution: &str) -> Mode {
        self.deploy
            .modes
            .read()
            .get(solution)
            .copied()
            .unwrap_or(Mode::Live)
    }

    /// Read the stored mode of every loaded solution; a solution without one (served for the
    /// first time on this store) gets `Draft` when it is named in `draft`, else `Live`, and
    /// that is stored. A name in `draft` that is no loaded solution is an error; one whose
    /// stored mode is `live` stays live, with a warning.
    pub async fn init_modes(&self, draft: &[String]) -> Result<(), String> {
        for name in draft {
            if self.solution(name).is_none() {
                return Err(format!(
                    "--draft {name}: no solution named '{name}' is loaded"
                ));
            }
        }
        let kv = Kv::new(
            self.store.as_ref(),
            &self.services.secrets,
            DEPLOY_NAMESPACE.into(),
        );
        for sol in self.solutions() {
            let key = format!("mode:{}", sol.name);
            let stored = kv
                .get(&key)
                .await
                .map_err(|e| format!("reading the mode of solution '{}': {e}", sol.name))?;
            let asked = draft.contains(&sol.name);
            let mode = match stored
                .as_ref()
                .and_then(Value::as_str)
                .and_then(Mode::parse)
            {
                Some(mode) => {
                    if asked && mode == Mode::Live {
                        tracing::warn!(solution = %sol.name, "--draft is ignored: the solution is live on this data directory (promoted, or first served live); `ferry demote {}` puts it back in draft", sol.name);
                    }
                    mode
                }
                None => {
                    let mode = if asked { Mode::Draft } else { Mode::Live };
                    kv.put(&key, &json!(mode.as_str()), None)
                        .await
                        .map_err(|e| format!("saving the mode of solution '{}': {e}", sol.name))?;
                    mode
                }
            };
            if mode == Mode::Draft {
                tracing::warn!(solution = %sol.name, "solution served in DRAFT mode: its triggers accept only requests with the header '{TEST_HEADER}: 1' and its schedules do not fire; `ferry promote {}` makes it live", sol.name);
            }
            self.deploy.modes.write().insert(sol.name.clone(), mode);
        }
        self.deploy.bump();
        Ok(())
    }

    /// Change a solution's mode (stored first, so that it survives a restart). Returns the
    /// mode it had.
    pub async fn set_mode(&self, solution: &str, mode: Mode) -> Result<Mode, ModeError> {
        if self.solution(solution).is_none() {
            return Err(ModeError::NotFound(solution.to_string()));
        }
        let kv = Kv::new(
            self.store.as_ref(),
            &self.services.secrets,
            DEPLOY_NAMESPACE.into(),
        );
        kv.put(&format!("mode:{solution}"), &json!(mode.as_str()), None)
            .await
            .map_err(|e| ModeError::Store(e.to_string()))?;
        let before = self
            .deploy
            .modes
            .write()
            .insert(solution.to_string(), mode)
            .unwrap_or(Mode::Live);
        self.deploy.bump();
        tracing::info!(
            solution,
            from = before.as_str(),
            to = mode.as_str(),
            "solution mode changed"
        );
        Ok(before)
    }

    /// The mode check of an event from the network: `Ok(test)` (whether it carries the test
    /// header), or the rejection of an event without it to a draft solution.
    pub(crate) fn admit(
        &self,
        solution: &str,
        request: &InboundRequest,
    ) -> Result<bool, IngestOutcome> {
        let test = match request.headers.get(TEST_HEADER) {
            None => false,
            Some(v) => match v.to_str().map(|s| s.trim().to_ascii_lowercase()) {
                Ok(s) if s == "1" || s == "true" => true,
                _ => {
                    return Err(IngestOutcome::Rejected {
                        status: 400,
                        message: format!(
                            "Header '{TEST_HEADER}' must be '1' or 'true' to mark a test event"
                        ),
                    })
                }
            },
        };
        if !test && self.mode(solution) == Mode::Draft {
            return Err(IngestOutcome::Rejected {
                status: 403,
                message: format!(
                    "Solution '{solution}' is in draft mode: it accepts only test events, \
                     which carry the header '{TEST_HEADER}: 1'. Promote it to live with \
                     `ferry promote {solution}`."
                ),
            });
        }
        Ok(test)
    }

    /// Reload every solution folder (see the module documentation). Reloads run one at a
    /// time.
    pub async fn reload(self: &Arc<Self>) -> Vec<ReloadResult> {
        let _one = self.deploy.reloading.lock().await;
        let dirs: Vec<(String, PathBuf)> = self
            .deploy
            .dirs
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut results = Vec::new();
        for (name, dir) in dirs {
            let outcome = self.reload_one(&name, &dir).await;
            match &outcome {
                ReloadOutcome::Unchanged { version } => {
                    tracing::info!(solution = %name, version, "reload: unchanged")
                }
                ReloadOutcome::Reloaded { from, to } => {
                    tracing::info!(solution = %name, from, to, "reload: new version serving")
                }
                ReloadOutcome::Failed { version, errors } => {
                    for e in errors {
                        tracing::error!(solution = %name, "reload: {e}");
                    }
                    tracing::error!(solution = %name, version, problems = errors.len(), "reload failed; the old version keeps serving");
                }
            }
            results.push(ReloadResult {
                solution: name,
                directory: dir,
                outcome,
            });
        }
        results
    }

    async fn reload_one(self: &Arc<Self>, name: &str, dir: &Path) -> ReloadOutcome {
        let Some(old) = self.solution(name) else {
            return ReloadOutcome::Failed {
                version: String::new(),
                errors: vec![ReloadError::plain(format!(
                    "solution '{name}' is not served"
                ))],
            };
        };
        let failed = |errors: Vec<ReloadError>| ReloadOutcome::Failed {
            version: old.version.id.clone(),
            errors,
        };
        // Cheap check first: an unchanged folder is not compiled again.
        match read_files(dir) {
            Ok(files) if version_id(&files) == old.version.id => {
                self.deploy.remember_git(name, git_info(dir));
                return ReloadOutcome::Unchanged {
                    version: old.version.id.clone(),
                };
            }
            Ok(_) => {}
            Err(e) => {
                return failed(vec![ReloadError {
                    file: Some(dir.to_path_buf()),
                    line: None,
                    message: format!("the solution folder cannot be read: {e}"),
                }])
            }
        }
        let (_, mut new, version, files) = match self.compile_dir_cached_versioned(dir).await {
            Ok(v) => v,
            Err(diags) => return failed(diags.into_iter().map(ReloadError::from).collect()),
        };
        if new.name != name {
            return failed(vec![ReloadError {
                file: Some(dir.join("solution.yaml")),
                line: None,
                message: format!(
                    "the folder now declares solution '{}' instead of '{name}'; renaming a solution needs a restart",
                    new.name
                ),
            }]);
        }
        if version.id == old.version.id {
            self.deploy.remember_git(name, version.git);
            return ReloadOutcome::Unchanged {
                version: old.version.id.clone(),
            };
        }
        new.version = version;
        if let Err(e) = self.store_version(&new, &files).await {
            return failed(vec![ReloadError::plain(e)]);
        }
        let new = Arc::new(new);
        let from = old.version.id.clone();
        // The swap: from here on, new events get the new version.
        let old_status = self.provisioning(name);
        {
            let mut solutions = self.solutions_mut();
            solutions.insert(name.to_string(), new.clone());
        }
        self.deploy.remember_git(name, new.version.git.clone());
        self.deploy
            .older
            .write()
            .insert((name.to_string(), old.version.id.clone()), old.clone());
        self.reset_provisioning(&new);
        self.deploy.bump();
        // Provision the new version as at start-up; deprovision what it no longer has.
        if let Some(url) = self.deploy.public_url.read().clone() {
            let new_status = self.provisioning(name);
            let removed: Vec<_> = old_status
                .into_iter()
                .filter(|s| s.state == ProvisionState::Provisioned)
                .filter(|s| {
                    !new_status
                        .iter()
                        .any(|n| n.kind == s.kind && n.name == s.name)
                })
                .collect();
            let engine = self.clone();
            let solution = name.to_string();
            tokio::spawn(async move {
                provision::deprovision_items(&engine, &old, &removed, &url).await;
                provision::provision_solution(engine, solution, url).await;
            });
        }
        ReloadOutcome::Reloaded {
            from,
            to: new.version.id.clone(),
        }
    }
}

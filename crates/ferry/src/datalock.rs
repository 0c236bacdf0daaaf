//! One server per data directory: an exclusive lock on `<data>/ferry.lock`.
//!
//! The lock is an OS file lock (`flock`), so it is released by the kernel when the process ends,
//! however it ends; a stale file never blocks a new server. The holder writes its pid, start time
//! and (once bound) listen address into the file, so that a second server can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The held lock; released when dropped (or when the process exits).
pub struct DataDirLock {
    file: File,
    path: PathBuf,
    started_at: String,
}

impl DataDirLock {
    /// Take the lock of `data` (created if needed), or fail with a message naming the process
    /// that holds it.
    pub fn acquire(data: &Path) -> anyhow::Result<DataDirLock> {
        let path = data.join("ferry.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = describe(&holder);
                anyhow::bail!(
                    "the data directory {} is in use by another ferry serve ({holder}); \
                     only one server may use a data directory: stop that one, or pass another --data",
                    data.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let mut lock = DataDirLock {
            file,
            path,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        lock.record(None)?;
        Ok(lock)
    }

    /// Write who holds the lock (pid, start time, and the listen address once known).
    pub fn record(&mut self, listen: Option<&str>) -> anyhow::Result<()> {
        let mut text = format!(
            "pid={}\nstarted_at={}\n",
            std::process::id(),
            self.started_at
        );
        if let Some(addr) = listen {
            text.push_str(&format!("listen={addr}\n"));
        }
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(text.as_bytes())?;
            f.flush()
        };
        write(&mut self.file).with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Leave an empty file: the next holder writes its own details.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// "pid 123, listening on 127.0.0.1:8787, started 2026-…" from the lock file's text.
fn describe(text: &str) -> String {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut parts = Vec::new();
    match get("pid") {
        Some(pid) => parts.push(format!("pid {pid}")),
        None => parts.push("pid unknown".to_string()),
    }
    if let Some(listen) = get("listen") {
        parts.push(format!("listening on {listen}"));
    }
    if let Some(at) = get("started_at") {
        parts.push(format!("started {at}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = DataDirLock::acquire(dir.path()).unwrap();
        first.record(Some("127.0.0.1:9999")).unwrap();
        // flock locks belong to the open file description: a second open in the same process
        // contends like another process would.
        let err = DataDirLock::acquire(dir.path())
            .err()
            .expect("second lock must fail");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("listening on 127.0.0.1:9999"), "{msg}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again after release");
    }
}

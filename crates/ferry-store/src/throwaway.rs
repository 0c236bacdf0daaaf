//! A throwaway PostgreSQL server for tests and benchmarks: `initdb` and `postgres` from the
//! installed PostgreSQL binaries, into a temporary directory, on a free loopback port.
//!
//! The binaries are looked for in `FERRY_PG_BIN` (a directory), on `PATH`, in
//! `/usr/local/bin` and in `/usr/lib/postgresql/<version>/bin` (the newest). PostgreSQL refuses
//! to run as root: as root, the directory is handed to the `postgres` user (else `nobody`) and
//! both programs run under that user's id.
//!
//! The server runs under a small shell watchdog that shuts it down and removes the directory
//! when the process that started it is gone, however it ended (a test binary exits without
//! dropping statics, or is killed). [`Throwaway::stop`] and [`Throwaway::start_again`] stop
//! and restart the same server (the same data and port), for tests of a database outage.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why no throwaway server can be started here.
#[derive(Debug)]
pub struct Unavailable(pub String);

/// Run a PostgreSQL tool to completion; a failure names the tool (`what`) and its stderr.
fn run_tool(cmd: &mut Command, what: &str) -> Result<(), Unavailable> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Unavailable(format!("running {what}: {e}")))?;
    if !out.status.success() {
        return Err(Unavailable(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A running throwaway PostgreSQL server (stopped and removed on drop).
pub struct Throwaway {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    fsync: bool,
    watchdog: Option<Child>,
}

/// The directory holding `initdb` and `postgres`, if any. A directory of links (such as
/// `/usr/local/bin` pointing into a Debian installation) is followed to the one holding the
/// programs themselves, where the other tools (`pg_isready`, `createdb`, `pg_dump`) are too.
pub fn find_bin_dir() -> Option<PathBuf> {
    find_links_dir().map(|d| {
        std::fs::canonicalize(d.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(d)
    })
}

fn find_links_dir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = std::env::var_os("FERRY_PG_BIN") {
        let d = PathBuf::from(d);
        if has(&d) {
            return Some(d);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has(&d) {
                return Some(d);
            }
        }
    }
    if has(Path::new("/usr/local/bin")) {
        return Some("/usr/local/bin".into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// The uid and gid of a user, from `/etc/passwd`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective user of this process.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Throwaway {
    /// Create and start a server. `fsync: false` trades durability against power loss for
    /// speed (tests); benchmarks keep it on.
    pub fn start(fsync: bool) -> Result<Throwaway, Unavailable> {
        let bin = find_bin_dir().ok_or_else(|| {
            Unavailable(
                "no PostgreSQL binaries (initdb, postgres) found in FERRY_PG_BIN, PATH, \
                 /usr/local/bin or /usr/lib/postgresql/*/bin"
                    .into(),
            )
        })?;
        let user = if is_root() {
            Some(
                user_ids("postgres")
                    .or_else(|| user_ids("nobody"))
                    .ok_or_else(|| {
                        Unavailable(
                            "running as root, and neither a postgres nor a nobody user exists \
                             to run PostgreSQL as"
                                .into(),
                        )
                    })?,
            )
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!("ferry-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Unavailable(format!("creating {}: {e}", dir.display())))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| Unavailable(format!("handing {} to uid {uid}: {e}", dir.display())))?;
        }
        let mut pg = Throwaway {
            dir,
            bin,
            port: 0,
            user,
            fsync,
            watchdog: None,
        };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data()).args([
            "-U",
            "ferry",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run_tool(&mut initdb, "initdb")?;
        pg.port = free_port().map_err(|e| Unavailable(format!("finding a free port: {e}")))?;
        pg.launch()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Start `postgres` under its watchdog and wait until it accepts connections.
    fn launch(&mut self) -> Result<(), Unavailable> {
        let script = r#"
"$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" -k "$PG_DIR" \
  -c listen_addresses=127.0.0.1 -c fsync="$PG_FSYNC" -c max_connections=200 \
  -c shared_buffers=128MB -c max_wal_size=2GB >>"$PG_DIR/log" 2>&1 &
pg=$!
while kill -0 "$pg" 2>/dev/null; do
  if [ ! -d "/proc/$PG_PARENT" ]; then
    kill -INT "$pg"; wait "$pg"; rm -rf "$PG_DIR"; exit 0
  fi
  sleep 0.2
done
"#;
        let mut cmd = Command::new("/bin/sh");
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .arg("-c")
            .arg(script)
            .env("PG_BIN", &self.bin)
            .env("PG_DIR", &self.dir)
            .env("PG_PORT", self.port.to_string())
            .env("PG_FSYNC", if self.fsync { "on" } else { "off" })
            .env("PG_PARENT", std::process::id().to_string())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Unavailable(format!("starting postgres: {e}")))?;
        self.watchdog = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), Unavailable> {
        let deadline = Instant::now() + within;
        loop {
            let ready = self
                .command("pg_isready")
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "ferry",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if let Some(w) = self.watchdog.as_mut() {
                if let Ok(Some(_)) = w.try_wait() {
                    return Err(Unavailable(format!(
                        "postgres exited at start: {}",
                        self.log_tail()
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(Unavailable(format!(
                    "postgres did not accept connections within {within:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://ferry@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a new, empty database and return its URL.
    pub fn create_database(&self, name: &str) -> Result<String, Unavailable> {
        let mut createdb = self.command("createdb");
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "ferry",
            name,
        ]);
        run_tool(&mut createdb, &format!("createdb {name}"))?;
        Ok(self.url(name))
    }

    /// Stop the server (a fast shutdown: connections are cut), keeping its data.
    pub fn stop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.data().join("postmaster.pid")) {
            if let Some(pid) = pid.lines().next() {
                let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
            }
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
    }

    /// Start a stopped server again on the same data and port.
    pub fn start_again(&mut self) -> Result<(), Unavailable> {
        self.launch()
    }

    /// The directory of the server (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the PostgreSQL binaries in use (`pg_dump`, `psql`, …).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A command for one of the PostgreSQL programs, run as the server's user when this process
    /// is root.
    pub fn tool(&self, program: &str) -> Command {
        self.command(program)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start a throwaway server for a test, or decide what to do without one: `Ok(None)` after a
/// visible notice on stderr naming the reason (a developer machine without PostgreSQL), a
/// panic when `FERRY_REQUIRE_POSTGRES=1` (CI must run these tests).
pub fn for_test(test: &str, fsync: bool) -> Option<Throwaway> {
    match Throwaway::start(fsync) {
        Ok(pg) => Some(pg),
        Err(e) => skip_or_fail(test, &e),
    }
}

/// The decision of [`for_test`] for an error already met.
pub fn skip_or_fail<T>(test: &str, why: &Unavailable) -> Option<T> {
    if std::env::var("FERRY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("{test}: PostgreSQL is required here (FERRY_REQUIRE_POSTGRES=1) but: {why}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of a test that
    // passes, and this notice must be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "NOTICE: skipping PostgreSQL test {test}: {why} (set FERRY_REQUIRE_POSTGRES=1 to fail instead)"
    );
    None
}

//! Helpers for end-to-end tests: run the real `ferry` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "test-api-token";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// Write a solution directory from `solution.yaml` text and runbook files.
pub fn solution(
    root: &Path,
    name: &str,
    solution_yaml: &str,
    runbooks: &[(&str, &str)],
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("runbooks")).unwrap();
    std::fs::write(dir.join("solution.yaml"), solution_yaml).unwrap();
    for (file, text) in runbooks {
        std::fs::write(dir.join("runbooks").join(format!("{file}.yaml")), text).unwrap();
    }
    dir
}

/// Run `ferry` with arguments; returns the output.
pub fn ferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("FERRY_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running ferry")
}

/// `ferry validate DIR [extra…]`: the exit code, and stdout followed by stderr.
pub fn validate(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["validate", dir.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let out = ferry(&args, &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `ferry run … --json`, parsed.
pub fn run_json(dir: &Path, runbook: &str, event: &Value) -> (i32, Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let event_file = tmp.path().join("event.json");
    std::fs::write(&event_file, serde_json::to_vec(event).unwrap()).unwrap();
    let out = ferry(
        &[
            "run",
            dir.to_str().unwrap(),
            "--runbook",
            runbook,
            "--event",
            event_file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let job: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), job, stderr)
}

/// The step records of a job with this step id.
pub fn steps<'a>(job: &'a Value, id: &str) -> Vec<&'a Value> {
    job["steps"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["step_id"] == id).collect())
        .unwrap_or_default()
}

/// Step ids in execution order.
pub fn step_order(job: &Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["step_id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A running `ferry serve`.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    pub output: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(data: &Path, solutions: &[&Path], envs: &[(&str, &str)]) -> Server {
        Self::start_with(data, solutions, envs, &[])
    }

    pub fn start_with(
        data: &Path,
        solutions: &[&Path],
        envs: &[(&str, &str)],
        extra: &[&str],
    ) -> Server {
        Self::start_listening(data, solutions, envs, "127.0.0.1:0", extra)
    }

    /// `ferry serve --listen <listen>` (a fixed address, e.g. to pass the same port to
    /// `--public-url` in `extra`).
    pub fn start_listening(
        data: &Path,
        solutions: &[&Path],
        envs: &[(&str, &str)],
        listen: &str,
        extra: &[&str],
    ) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(extra)
            .args(solutions)
            .env("FERRY_API_TOKEN", TOKEN)
            .env("FERRY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ferry serve");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let out2 = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                out2.lock().unwrap().push_str(&line);
                out2.lock().unwrap().push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        for line in lines.by_ref().map_while(Result::ok) {
            output.lock().unwrap().push_str(&line);
            output.lock().unwrap().push('\n');
            if let Some(rest) = line.strip_prefix("Ferry listening on http://") {
                addr = Some(rest.trim().to_string());
                break;
            }
        }
        let out3 = output.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                out3.lock().unwrap().push_str(&line);
                out3.lock().unwrap().push('\n');
            }
        });
        let addr =
            addr.unwrap_or_else(|| panic!("server did not start:\n{}", output.lock().unwrap()));
        Server {
            child,
            addr,
            data: data.to_path_buf(),
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    pub fn logs(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub async fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut req = client.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn api(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("api");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Wait until the job reaches one of `statuses`.
    pub async fn wait_job(&self, id: &str, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, job) = self.api(&format!("/jobs/{id}")).await;
            if code == 200 && statuses.iter().any(|s| job["status"] == *s) {
                return job;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} did not reach {statuses:?}: {job}\nserver output:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `ferry emulator` process on a free loopback port, killed when dropped.
pub struct Emulator {
    pub child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `ferry emulator --listen 127.0.0.1:0 <extra…>` (in `dir` when given, without a
/// `FERRY_XURRENT_SCHEMA` override) and wait for its "listening on" line.
pub fn start_emulator_with(extra: &[&str], dir: Option<&Path>) -> Emulator {
    let mut cmd = Command::new(bin());
    cmd.args(["emulator", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("FERRY_XURRENT_SCHEMA")
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().expect("start emulator");
    let stdout = child.stdout.take().expect("emulator stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the emulator exited before listening")
            .expect("line");
        if let Some(rest) = line.strip_prefix("Xurrent emulator listening on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Emulator { child, base }
}

/// [`start_emulator_with`] with default options in the current directory.
pub fn start_emulator() -> Emulator {
    start_emulator_with(&[], None)
}

/// Poll `f` every 100 ms until it gives a value; fail the test (with the server's log) after
/// 60 s, naming `what`.
pub async fn wait_until<F, Fut, T>(what: &str, server: &Server, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A downstream HTTP server on a loopback port whose `GET /status` answers 500 ("down") until
/// the returned flag is set, then 200 ("up"): a dependency that fails and later recovers.
pub async fn flaky_downstream() -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                if h.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::OK, "up")
                } else {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the downstream");
    let addr = listener.local_addr().expect("downstream address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), healthy)
}

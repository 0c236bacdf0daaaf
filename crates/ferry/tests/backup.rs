//! Backup and restore, as docs/deploy.md describes them, for both stores: jobs stored before
//! the backup are found again by a server started on the restored copy.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{solution, Server};
use ferry_store::throwaway;
use serde_json::json;

const MASTER_KEY: &str = "5e1c0a3b7d9f2e4a6c8b0d1f3e5a7c9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c";

fn sol(root: &Path) -> std::path::PathBuf {
    solution(
        root,
        "b",
        "name: b\n",
        &[(
            "r",
            "name: r\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n  - { id: log, action: debug.log_message, input: { message: \"n={{ trigger.body.n }}\" } }\n",
        )],
    )
}

/// Post three events and wait for their jobs to finish; returns the job ids.
async fn three_jobs(server: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..3 {
        let (code, body) = server.post("/inbound/b/r", &json!({ "n": n }), &[]).await;
        assert_eq!(code, 200, "{body}");
        ids.push(body["job_uuid"].as_str().unwrap().to_string());
    }
    for id in &ids {
        server
            .wait_job(id, &["finished"], Duration::from_secs(30))
            .await;
    }
    ids
}

async fn assert_found(server: &Server, ids: &[String]) {
    for id in ids {
        let (code, job) = server.api(&format!("/jobs/{id}")).await;
        assert_eq!(code, 200, "job {id} not found after the restore: {job}");
        assert_eq!(job["status"], "finished");
        assert_eq!(job["steps"][0]["step_id"], "log");
    }
}

/// SQLite: stop the server (or keep it running and use `sqlite3 … ".backup …"`), copy
/// `ferry.db` and the master key; a server on the copy finds every job.
#[tokio::test]
async fn sqlite_backup_is_restored_with_its_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sol(tmp.path());
    let data = tmp.path().join("data");
    let env = [("FERRY_MASTER_KEY", MASTER_KEY)];
    let mut server = Server::start(&data, &[&s], &env);
    let ids = three_jobs(&server).await;
    server.terminate();
    // The backup: the database file (a clean stop leaves no WAL behind to copy along).
    let backup = tmp.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::copy(data.join("ferry.db"), backup.join("ferry.db")).unwrap();
    for extra in ["ferry.db-wal", "ferry.db-shm"] {
        if data.join(extra).exists() {
            std::fs::copy(data.join(extra), backup.join(extra)).unwrap();
        }
    }
    // Restore into a new data directory.
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    for f in std::fs::read_dir(&backup).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), restored.join(f.file_name())).unwrap();
    }
    let server = Server::start(&restored, &[&s], &env);
    assert_found(&server, &ids).await;
}

/// PostgreSQL: `pg_dump --format=custom` of the live database while a node runs, restored with
/// `pg_restore` into a new database; a node on it finds every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_is_restored_with_its_jobs() {
    let Some(pg) = throwaway::for_test("postgres_backup_is_restored_with_its_jobs", false) else {
        return;
    };
    let url = pg.create_database("live").expect("database");
    let tmp = tempfile::tempdir().unwrap();
    let s = sol(tmp.path());
    let env = [("FERRY_MASTER_KEY", MASTER_KEY)];
    let server = Server::start_with(&tmp.path().join("n1"), &[&s], &env, &["--store", &url]);
    let ids = three_jobs(&server).await;
    let port = pg.port().to_string();
    let dump = pg
        .tool("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "ferry",
            "--format=custom",
            "live",
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    drop(server);
    let restored_url = pg.create_database("restored").expect("database");
    let mut restore = pg
        .tool("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "ferry",
            "--no-owner",
            "-d",
            "restored",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pg_restore");
    {
        use std::io::Write;
        restore
            .stdin
            .take()
            .unwrap()
            .write_all(&dump.stdout)
            .unwrap();
    }
    let out = restore.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_with(
        &tmp.path().join("n2"),
        &[&s],
        &env,
        &["--store", &restored_url],
    );
    assert_found(&server, &ids).await;
    drop(server);
    drop(pg);
}

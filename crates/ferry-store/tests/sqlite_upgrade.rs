//! Upgrading a SQLite data directory across the migration that moved `steps` from a
//! WITHOUT ROWID table to a rowid table: every stored step survives with its contents and
//! order, and the upgraded store goes on appending, reading and deleting steps.

use std::path::Path;
use std::str::FromStr;

use chrono::Utc;
use ferry_store::{
    Checkpoint, JobStatus, SqliteStore, StepRecord, StepStatus, Store, StoreOptions,
};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

/// The first migration that is not applied before the upgrade.
const STEPS_ROWID: i64 = 20261130000006;

/// A connection to the database at `db` (created if missing).
async fn connect(db: &Path) -> SqliteConnection {
    SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

/// Apply the crate's migrations older than `before` to a new database at `db`.
async fn migrate_until(db: &Path, before: i64) {
    let older = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version < before {
            std::fs::copy(&path, older.path().join(&name)).unwrap();
        }
    }
    let mut conn = connect(db).await;
    sqlx::migrate::Migrator::new(older.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn steps_survive_the_move_to_a_rowid_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ferry.db");
    migrate_until(&db, STEPS_ROWID).await;

    // A job with three steps written under the old schema, one of them far larger than a page
    // (the case the new layout is for), and a second job's step in between.
    let job = uuid::Uuid::now_v7();
    let other = uuid::Uuid::now_v7();
    let big = "x".repeat(40_000);
    {
        let mut conn = connect(&db).await;
        for id in [job, other] {
            sqlx::query(
                "INSERT INTO jobs (id, solution, runbook, status, trigger_output, state, \
                 created_at, updated_at) VALUES (?1, 's', 'r', 'running', '{}', '{}', 1, 1)",
            )
            .bind(id)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        let rows = [
            (job, 1, "fetch", format!("{{\"page\":\"{big}\"}}")),
            (other, 1, "only", "{\"n\":1}".to_string()),
            (job, 2, "map", "{\"n\":2}".to_string()),
            (job, 3, "post", "{\"n\":3}".to_string()),
        ];
        for (id, seq, step, outputs) in rows {
            sqlx::query(
                "INSERT INTO steps (job_id, seq, step_id, invocation, status, input, outputs, \
                 logs, error, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, 0, 'finished', '{}', ?4, '[]', NULL, 1000, 2000)",
            )
            .bind(id)
            .bind(seq)
            .bind(step)
            .bind(outputs)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        conn.close().await.unwrap();
    }

    // Opening the store applies the rest of the migrations.
    let store = SqliteStore::open(&db, StoreOptions::default())
        .await
        .unwrap();
    let steps = store.job_steps(job).await.unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.seq, s.step_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "fetch"), (2, "map"), (3, "post")]
    );
    assert_eq!(steps[0].outputs, json!({ "page": big }));
    assert_eq!(steps[2].outputs, json!({ "n": 3 }));
    assert_eq!(
        store.step_outputs(job, "map", 0).await.unwrap(),
        Some(json!({ "n": 2 }))
    );

    // The checkpoint trigger was re-created: a new step gets the next seq.
    let now = Utc::now();
    store
        .checkpoint(Checkpoint {
            job_id: job,
            step: Some(StepRecord {
                job_id: job,
                seq: 0,
                step_id: "log".into(),
                invocation: 0,
                status: StepStatus::Finished,
                input: json!({}),
                outputs: json!({ "n": 4 }),
                logs: Vec::new(),
                error: None,
                started_at: now,
                finished_at: now,
            }),
            state: json!({ "done": true }),
            status: JobStatus::Finished,
            next_run_at: None,
            error: None,
            owner: None,
        })
        .await
        .unwrap();
    let steps = store.job_steps(job).await.unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!((steps[3].seq, steps[3].step_id.as_str()), (4, "log"));

    // The unique (job_id, seq) index holds, and a job's steps still go with it.
    let mut conn = connect(&db).await;
    // The new layout: a rowid table, its key in a unique index of its own.
    let table: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'steps'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!table.to_uppercase().contains("WITHOUT ROWID"), "{table}");
    let index: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'steps_job_seq'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        index.contains("UNIQUE") && index.contains("(job_id, seq)"),
        "{index}"
    );
    let duplicate = sqlx::query(
        "INSERT INTO steps (job_id, seq, step_id, invocation, status, input, outputs, logs, \
         started_at, finished_at) VALUES (?1, 1, 'again', 0, 'finished', '{}', '{}', '[]', 1, 1)",
    )
    .bind(job)
    .execute(&mut conn)
    .await;
    assert!(duplicate.is_err(), "a second step 1 was accepted");
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM jobs WHERE id = ?1")
        .bind(job)
        .execute(&mut conn)
        .await
        .unwrap();
    let left: Vec<(i64, String)> = sqlx::query_as("SELECT seq, step_id FROM steps")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, vec![(1, "only".to_string())]);
    conn.close().await.unwrap();
    store.close().await;
}

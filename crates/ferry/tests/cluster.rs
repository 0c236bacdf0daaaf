//! Several `ferry serve` nodes on one PostgreSQL store (a throwaway server started by the test;
//! skipped with a notice where PostgreSQL is not installed, unless `FERRY_REQUIRE_POSTGRES=1`):
//! a node killed with `kill -9` mid-load, and the database itself stopped under load.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{solution, Server, TOKEN};
use ferry_store::throwaway;
use serde_json::{json, Value};

const MASTER_KEY: &str = "7f3a9c2e1b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f5a7c9e0b2d4f6a";
const STEPS: usize = 4;

fn cluster_solution(root: &Path) -> PathBuf {
    let mut rb = String::from(
        "name: r\nconcurrency: per_job_context\ntrigger:\n  connector: json_endpoint\n  type: endpoint\n  config:\n    body_schema: [ { id: n, type: integer } ]\nsteps:\n",
    );
    for i in 0..STEPS {
        rb.push_str(&format!(
            "  - {{ id: s{i}, action: debug.log_message, input: {{ message: \"{{{{ trigger.body.n }}}} step {i}\" }} }}\n"
        ));
    }
    solution(root, "c", "name: c\n", &[("r", &rb)])
}

fn node(root: &Path, i: usize, sol: &Path, url: &str, lease: &str) -> Server {
    Server::start_with(
        &root.join(format!("node{i}")),
        &[sol],
        &[("FERRY_MASTER_KEY", MASTER_KEY), ("FERRY_LOG", "warn")],
        &["--store", url, "--lease", lease, "--workers", "2"],
    )
}

/// One event posted to `addr`; `Ok(Some(job id))` for a 200, `Ok(None)` for another status
/// (counted by the caller), `Err` when the node cannot be reached.
async fn post(
    client: &reqwest::Client,
    addr: &str,
    n: i64,
    context: Option<&str>,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let mut req = client
        .post(format!("http://{addr}/inbound/c/r"))
        .json(&json!({ "n": n }));
    if let Some(c) = context {
        req = req.header("x-job-context-identifier", c);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Ok((
        status,
        body["job_uuid"]
            .as_str()
            .filter(|_| status == 200)
            .map(String::from),
    ))
}

async fn job(client: &reqwest::Client, addr: &str, id: &str) -> Option<Value> {
    let resp = client
        .get(format!("http://{addr}/api/v1/jobs/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    (resp.status() == 200).then_some(resp.json().await.ok()?)
}

async fn count_status(client: &reqwest::Client, addr: &str, status: &str) -> usize {
    let resp = client
        .get(format!(
            "http://{addr}/api/v1/jobs?status={status}&limit=500"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list jobs");
    let body: Value = resp.json().await.expect("json");
    body["jobs"].as_array().map_or(0, Vec::len)
}

/// Wait until every acknowledged job is finished; returns them by id.
async fn wait_finished(
    client: &reqwest::Client,
    addr: &str,
    ids: &[String],
    within: Duration,
    logs: impl Fn() -> String,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut done = HashMap::new();
    loop {
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            if let Some(j) = job(client, addr, id).await {
                match j["status"].as_str() {
                    Some("finished") => {
                        done.insert(id.clone(), j);
                    }
                    Some("failed") => panic!("job {id} failed: {j}\n{}", logs()),
                    _ => {}
                }
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged jobs finished in {within:?}\n{}",
            done.len(),
            ids.len(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each completed step ran once: the step records are exactly s0..s3, in order, completed.
fn assert_steps_once(id: &str, job: &Value) {
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("job {id} has no steps: {job}"))
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "completed", "job {id}: {s}");
            s["step_id"].as_str().unwrap_or("?")
        })
        .collect();
    let expected: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
    assert_eq!(steps, expected, "job {id}: a step ran twice or not at all");
}

fn time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("no time: {v}")))
        .unwrap()
}

/// Jobs of one context ran one at a time, in the order their events were acknowledged.
fn assert_context_order(jobs: &HashMap<String, Value>, order: &BTreeMap<String, Vec<String>>) {
    for (ctx, ids) in order {
        for pair in ids.windows(2) {
            let (a, b) = (&jobs[&pair[0]], &jobs[&pair[1]]);
            let a_end = time(&a["finished_at"]);
            let b_start = time(&b["steps"][0]["started_at"]);
            assert!(
                a_end <= b_start,
                "context {ctx}: job {} started at {b_start} before job {} ended at {a_end}",
                pair[1],
                pair[0]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_when_one_is_killed_mid_load() {
    let Some(pg) = throwaway::for_test(
        "three_nodes_lose_nothing_when_one_is_killed_mid_load",
        false,
    ) else {
        return;
    };
    let url = pg.create_database("cluster").expect("database");
    let tmp = tempfile::tempdir().unwrap();
    let sol = cluster_solution(tmp.path());
    let nodes: Vec<Server> = (0..3)
        .map(|i| node(tmp.path(), i, &sol, &url, "2s"))
        .collect();
    let addrs: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(
        nodes.iter().map(|n| Some(n.addr.clone())).collect(),
    ));
    let nodes = Arc::new(Mutex::new(nodes));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // 12 contexts × 15 events, each context's events sent one after the other (its order is the
    // order of the acknowledgements), plus 120 events without a context, spread over the nodes.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let order: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..16usize {
        let (client, addrs, acked, order, sent) = (
            client.clone(),
            addrs.clone(),
            acked.clone(),
            order.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ctx = (t < 12).then(|| format!("ctx{t}"));
            let count = if t < 12 { 15 } else { 30 };
            for k in 0..count {
                let n = (t * 1000 + k) as i64;
                // Spread over the nodes; a dead node's events go to the next one.
                let mut target = (t + k) % 3;
                loop {
                    let addr = addrs.lock().unwrap()[target].clone();
                    let Some(addr) = addr else {
                        target = (target + 1) % 3;
                        continue;
                    };
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match post(&client, &addr, n, ctx.as_deref()).await {
                        Ok((200, Some(id))) => {
                            acked.lock().unwrap().push(id.clone());
                            if let Some(c) = &ctx {
                                order.lock().unwrap().entry(c.clone()).or_default().push(id);
                            }
                            break;
                        }
                        // Not acknowledged (the node died under it, or answered 503): the
                        // client retries elsewhere, as a load balancer's client would.
                        Ok(_) | Err(_) => {
                            target = (target + 1) % 3;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        }));
    }
    // Mid-load: kill node 1 (kill -9), restart it on the same data directory 3 s later.
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    addrs.lock().unwrap()[1] = None;
    nodes.lock().unwrap()[1].kill9();
    let killed_at = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = node(tmp.path(), 1, &sol, &url, "2s");
    addrs.lock().unwrap()[1] = Some(restarted.addr.clone());
    nodes.lock().unwrap()[1] = restarted;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        12 * 15 + 4 * 30,
        "every event acknowledged once"
    );
    assert!(
        killed_at < acked.len(),
        "the node was killed before the load ended"
    );
    let logs = || {
        nodes
            .lock()
            .unwrap()
            .iter()
            .map(Server::logs)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let addr0 = nodes.lock().unwrap()[0].addr.clone();
    let jobs = wait_finished(&client, &addr0, &acked, Duration::from_secs(120), logs).await;
    for (id, j) in &jobs {
        assert_steps_once(id, j);
    }
    assert_context_order(&jobs, &order.lock().unwrap());
    for status in ["running", "queued", "waiting"] {
        assert_eq!(
            count_status(&client, &addr0, status).await,
            0,
            "{status} jobs left"
        );
    }
    // Every node took part in running the jobs? At least the store saw all of them finish.
    assert_eq!(count_status(&client, &addr0, "failed").await, 0);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_and_the_nodes_recover() {
    let Some(mut pg) =
        throwaway::for_test("a_database_outage_answers_503_and_the_nodes_recover", false)
    else {
        return;
    };
    let url = pg.create_database("outage").expect("database");
    let tmp = tempfile::tempdir().unwrap();
    let sol = cluster_solution(tmp.path());
    let nodes: Vec<Server> = (0..2)
        .map(|i| node(tmp.path(), i, &sol, &url, "2s"))
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4usize {
        let (client, addrs, acked, refused, stop) = (
            client.clone(),
            addrs.clone(),
            acked.clone(),
            refused.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let addr = &addrs[(t + k) % addrs.len()];
                let ctx = format!("ctx{}", k % 3);
                match post(&client, addr, k as i64, Some(&ctx)).await {
                    Ok((200, Some(id))) => acked.lock().unwrap().push((Instant::now(), id)),
                    Ok((503, _)) => refused.lock().unwrap().push(Instant::now()),
                    other => panic!("event {k} to {addr}: {other:?}"),
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "no event acknowledged before the outage");
    let down = Instant::now();
    pg.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The management API says so too: 503 with the cause, not a 500 (the first calls meet
    // pooled connections the server has ended, the later ones a refused connection).
    let mut api_answers = Vec::new();
    for _ in 0..3 {
        let resp = client
            .get(format!("http://{}/api/v1/jobs?limit=1", addrs[0]))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("list jobs while the database is down");
        let status = resp.status().as_u16();
        api_answers.push((status, resp.text().await.unwrap_or_default()));
    }
    assert!(
        api_answers
            .iter()
            .all(|(s, body)| *s == 503 && body.contains("the store is unavailable")),
        "{api_answers:?}\n{}",
        nodes[0].logs()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_again().expect("restart PostgreSQL");
    let up = Instant::now();
    // The nodes recover by themselves: acknowledgements resume within a few seconds.
    let deadline = up + Duration::from_secs(30);
    loop {
        if acked.lock().unwrap().iter().any(|(t, _)| *t > up) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event acknowledged after PostgreSQL came back\n{}\n---\n{}",
            nodes[0].logs(),
            nodes[1].logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let refused_during = refused
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= down && **t <= up + Duration::from_secs(1))
        .count();
    assert!(refused_during > 0, "no 503 while the database was down");
    let ids: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, id)| id.clone())
        .collect();
    let logs = || format!("{}\n---\n{}", nodes[0].logs(), nodes[1].logs());
    let jobs = wait_finished(&client, &addrs[0], &ids, Duration::from_secs(120), logs).await;
    assert_eq!(jobs.len(), ids.len(), "an acknowledged event was lost");
    for status in ["running", "queued", "waiting", "failed"] {
        assert_eq!(
            count_status(&client, &addrs[0], status).await,
            0,
            "{status} jobs left"
        );
    }
    drop(nodes);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_master_key_or_other_solutions_is_refused() {
    let Some(pg) = throwaway::for_test(
        "a_node_with_another_master_key_or_other_solutions_is_refused",
        false,
    ) else {
        return;
    };
    let url = pg.create_database("refuse").expect("database");
    let tmp = tempfile::tempdir().unwrap();
    let sol = cluster_solution(tmp.path());
    let first = node(tmp.path(), 0, &sol, &url, "30s");
    // Another master key.
    let other_key = "00".repeat(32);
    let refused = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--data",
        ])
        .arg(tmp.path().join("other"))
        .arg(&sol)
        .env("FERRY_MASTER_KEY", &other_key)
        .env("FERRY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("master key"), "{stderr}");
    // The same key, another version of the solution.
    let changed = tmp.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    let sol2 = cluster_solution(&changed);
    std::fs::write(
        sol2.join("solution.yaml"),
        "name: c\ndescription: a newer version\n",
    )
    .unwrap();
    let refused = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
            "--data",
        ])
        .arg(tmp.path().join("other2"))
        .arg(&sol2)
        .env("FERRY_MASTER_KEY", MASTER_KEY)
        .env("FERRY_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("solution versions") && stderr.contains("'c'"),
        "{stderr}"
    );
    // The same key and solutions: a second node joins.
    let second = node(tmp.path(), 1, &sol, &url, "30s");
    let (code, _) = second.api("/jobs").await;
    assert_eq!(code, 200);
    drop(first);
    drop(second);
    drop(pg);
}

//! Provisioning: the `provision` / `deprovision` hooks of connections and triggers, run when
//! `ferry serve` starts and stops serving a solution.
//!
//! Each solution is provisioned by its own background task: its connections first, then its
//! runbooks' triggers. A hook that fails is retried with exponential back-off (1 s doubling up
//! to [`MAX_BACKOFF`]) until it succeeds or the engine stops; other items and other solutions
//! go on. The state of every item is kept in memory and shown by the management API.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use serde::Serialize;
use serde_json::Value;

use crate::compile::CompiledSolution;
use crate::connector::ProvisionContext;
use crate::engine::Engine;
use crate::kv::{trigger_namespace, Kv};

/// Longest pause between two attempts of a failing provision.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest time one provision or deprovision call may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an item stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionState {
    /// Not provisioned yet (first attempt pending, or waiting for a retry after an error).
    Pending,
    /// The last provision succeeded.
    Provisioned,
    /// The last attempt failed; it is retried (see `last_error`, `next_attempt_at`).
    Failed,
    /// Deprovisioned (the server stopped serving the solution).
    Deprovisioned,
}

/// What is provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionKind {
    /// A connection.
    Connection,
    /// A runbook's trigger.
    Trigger,
}

/// The provisioning state of one connection or trigger.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProvisionStatus {
    /// Connection or trigger.
    pub kind: ProvisionKind,
    /// The connection's name, or the runbook's name for its trigger.
    pub name: String,
    /// Current state.
    pub state: ProvisionState,
    /// Provision attempts so far.
    pub attempts: u32,
    /// The message of the last failed attempt (cleared on success).
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (failed items).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The initial (pending) state of every item of a solution, connections first.
pub fn initial_status(sol: &CompiledSolution) -> Vec<ProvisionStatus> {
    let item = |kind, name: &String| ProvisionStatus {
        kind,
        name: name.clone(),
        state: ProvisionState::Pending,
        attempts: 0,
        last_error: None,
        updated_at: None,
        next_attempt_at: None,
    };
    sol.connections
        .keys()
        .map(|n| item(ProvisionKind::Connection, n))
        .chain(sol.runbooks.keys().map(|n| item(ProvisionKind::Trigger, n)))
        .collect()
}

/// The back-off after `attempts` failed attempts: 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Which hook to call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Provision,
    Deprovision,
}

/// Call one item's hook (with [`HOOK_TIMEOUT`]).
async fn call(
    engine: &Engine,
    sol: &CompiledSolution,
    kind: ProvisionKind,
    name: &str,
    public_url: &str,
    hook: Hook,
) -> Result<(), String> {
    let store = engine.store.as_ref();
    let secrets = engine.services.secrets.as_ref();
    let null = Value::Null;
    let fut = async {
        match kind {
            ProvisionKind::Connection => {
                let Some(conn) = sol.connections.get(name) else {
                    return Ok(());
                };
                let Some(connector) = engine.registry.get_connector(&conn.connector) else {
                    return Ok(());
                };
                let ctx = ProvisionContext {
                    solution: &sol.name,
                    runbook: None,
                    trigger_url: None,
                    config: &null,
                    connection: Some(conn),
                    http: &engine.services.http,
                    kv: Kv::new(store, secrets, conn.namespace.clone()),
                    secrets,
                    store,
                    services: &engine.services,
                };
                match hook {
                    Hook::Provision => connector.provision(&ctx).await,
                    Hook::Deprovision => connector.deprovision(&ctx).await,
                }
            }
            ProvisionKind::Trigger => {
                let Some(rb) = sol.runbooks.get(name) else {
                    return Ok(());
                };
                let ctx = ProvisionContext {
                    solution: &sol.name,
                    runbook: Some(&rb.name),
                    trigger_url: Some(format!(
                        "{}/inbound/{}/{}",
                        public_url.trim_end_matches('/'),
                        sol.name,
                        rb.name
                    )),
                    config: &rb.trigger_config,
                    connection: rb.inbound.as_ref().and_then(|c| sol.connections.get(c)),
                    http: &engine.services.http,
                    kv: Kv::new(store, secrets, trigger_namespace(&sol.name, &rb.name)),
                    secrets,
                    store,
                    services: &engine.services,
                };
                match hook {
                    Hook::Provision => rb.trigger.provision(&ctx).await,
                    Hook::Deprovision => rb.trigger.deprovision(&ctx).await,
                }
            }
        }
    };
    // A hook that panics is a failed attempt, not a dead provisioning task.
    let fut = std::panic::AssertUnwindSafe(fut).catch_unwind();
    match tokio::time::timeout(HOOK_TIMEOUT, fut).await {
        Ok(Ok(r)) => r.map_err(|e| ferry_core::secrets::redact_str(&e)),
        Ok(Err(_)) => Err("the hook panicked".into()),
        Err(_) => Err(format!("timed out after {} s", HOOK_TIMEOUT.as_secs())),
    }
}

/// Provision every item of `solution` until all are provisioned or the engine stops.
///
/// The task provisions one version of the solution: once a reload has replaced it, the task
/// ends (the reload starts one for the new version).
pub async fn provision_solution(engine: Arc<Engine>, solution: String, public_url: String) {
    let Some(sol) = engine.solution(&solution) else {
        return;
    };
    let replaced = || {
        engine
            .solution(&solution)
            .is_none_or(|cur| !Arc::ptr_eq(&cur, &sol))
    };
    loop {
        let mut next_due: Option<DateTime<Utc>> = None;
        for item in engine.provisioning(&solution) {
            if engine.is_stopping() || replaced() {
                return;
            }
            if item.state == ProvisionState::Provisioned {
                continue;
            }
            if item.next_attempt_at.is_some_and(|t| t > Utc::now()) {
                next_due = next_due.min(item.next_attempt_at).or(item.next_attempt_at);
                continue;
            }
            let result = call(
                &engine,
                &sol,
                item.kind,
                &item.name,
                &public_url,
                Hook::Provision,
            )
            .await;
            if replaced() {
                return;
            }
            let kind = match item.kind {
                ProvisionKind::Connection => "connection",
                ProvisionKind::Trigger => "trigger",
            };
            let updated = engine.update_provisioning(&solution, item.kind, &item.name, |s| {
                s.attempts += 1;
                s.updated_at = Some(Utc::now());
                match &result {
                    Ok(()) => {
                        s.state = ProvisionState::Provisioned;
                        s.last_error = None;
                        s.next_attempt_at = None;
                    }
                    Err(e) => {
                        s.state = ProvisionState::Failed;
                        s.last_error = Some(e.clone());
                        let wait = chrono::Duration::from_std(backoff(s.attempts))
                            .unwrap_or_else(|_| chrono::Duration::seconds(300));
                        s.next_attempt_at = Some(Utc::now() + wait);
                    }
                }
            });
            match (&result, updated) {
                (Ok(()), Some(s))
                    if s.attempts > 1 || !matches!(item.state, ProvisionState::Pending) =>
                {
                    tracing::info!(solution, kind, name = %item.name, attempts = s.attempts, "provisioned");
                }
                (Ok(()), _) => {}
                (Err(e), Some(s)) => {
                    tracing::warn!(solution, kind, name = %item.name, attempts = s.attempts, error = %e, next_attempt_at = ?s.next_attempt_at, "provision failed; retrying");
                    next_due = next_due.min(s.next_attempt_at).or(s.next_attempt_at);
                }
                (Err(_), None) => {}
            }
        }
        let Some(due) = next_due else {
            return; // everything is provisioned
        };
        // Sleep until the next attempt is due, waking up to notice a shutdown.
        while Utc::now() < due {
            if engine.is_stopping() || replaced() {
                return;
            }
            let left = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left.min(Duration::from_millis(500))).await;
        }
    }
}

/// Deprovision every provisioned item of `solution` (triggers first), recording the outcome.
pub async fn deprovision_solution(engine: &Engine, solution: &str, public_url: &str) {
    let Some(sol) = engine.solution(solution) else {
        return;
    };
    for item in engine.provisioning(solution).into_iter().rev() {
        if item.state != ProvisionState::Provisioned {
            continue;
        }
        let result = call(
            engine,
            &sol,
            item.kind,
            &item.name,
            public_url,
            Hook::Deprovision,
        )
        .await;
        if let Err(e) = &result {
            tracing::warn!(solution, name = %item.name, error = %e, "deprovision failed");
        }
        engine.update_provisioning(solution, item.kind, &item.name, |s| {
            s.updated_at = Some(Utc::now());
            match &result {
                Ok(()) => {
                    s.state = ProvisionState::Deprovisioned;
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(format!("deprovision failed: {e}")),
            }
        });
    }
}

/// Deprovision `items` of a version of a solution that a reload replaced (the connections and
/// triggers the new version no longer has), triggers first. Failures are logged.
pub async fn deprovision_items(
    engine: &Engine,
    old: &CompiledSolution,
    items: &[ProvisionStatus],
    public_url: &str,
) {
    let mut items: Vec<&ProvisionStatus> = items.iter().collect();
    items.sort_by_key(|s| s.kind == ProvisionKind::Connection);
    for item in items {
        let kind = match item.kind {
            ProvisionKind::Connection => "connection",
            ProvisionKind::Trigger => "trigger",
        };
        match call(
            engine,
            old,
            item.kind,
            &item.name,
            public_url,
            Hook::Deprovision,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(solution = %old.name, kind, name = %item.name, "deprovisioned: the reloaded solution no longer has it")
            }
            Err(e) => {
                tracing::warn!(solution = %old.name, kind, name = %item.name, error = %e, "deprovisioning what the reloaded solution no longer has failed")
            }
        }
    }
}

//! The [`Engine`]: loaded solutions, the store, shared services and the trigger pipeline.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::loader::{load_solution, Diagnostic};
use ferry_core::mapping::Expressions;
use ferry_core::model::Concurrency;
use ferry_core::secrets::Secrets;
use ferry_store::{InsertOutcome, NewJob, Store};
use indexmap::IndexMap;
use parking_lot::RwLock;
use serde_json::{json, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::action::Services;
use crate::compile::{compile_solution, CompiledRunbook, CompiledSolution};
use crate::executor::{ExecEnv, ExecLimits, RunbookSource};
use crate::http::{HttpClient, HttpLimits};
use crate::inbound;
use crate::ingest::{InboundRequest, IngestOutcome};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::trigger::TriggerError;

/// Tunables of the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Number of concurrent job workers.
    pub workers: usize,
    /// Lease of a claimed job.
    pub lease: Duration,
    /// Longest time one step may run (spec: 90 s).
    pub step_timeout: Duration,
    /// Most step invocations in one job (guards against endless retry or iteration loops).
    pub max_invocations: u64,
    /// Most consecutive reschedules of one step before the job fails.
    pub max_reschedules: u32,
    /// Largest encoded job state in bytes (a step whose state would be larger fails the job).
    pub max_state_bytes: usize,
    /// Outbound HTTP limits.
    pub http: HttpLimits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            workers: 4,
            lease: Duration::from_secs(300),
            step_timeout: Duration::from_secs(90),
            max_invocations: ExecLimits::default().max_invocations,
            max_reschedules: 100,
            max_state_bytes: ExecLimits::default().max_state_bytes,
            http: HttpLimits::default(),
        }
    }
}

/// The engine shared by the HTTP server and the workers.
pub struct Engine {
    /// Known connectors.
    pub registry: Registry,
    /// Durable store.
    pub store: Arc<dyn Store>,
    /// Services for actions.
    pub services: Services,
    /// Expression environment.
    pub exprs: Expressions,
    /// Counters.
    pub metrics: Metrics,
    /// Wakes idle workers when a job becomes runnable.
    pub notify: Notify,
    /// Options.
    pub options: EngineOptions,
    solutions: RwLock<IndexMap<String, Arc<CompiledSolution>>>,
    stopping: AtomicBool,
}

impl Engine {
    /// A new engine over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<Secrets>,
        options: EngineOptions,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            registry: Registry::builtin(),
            services: Services {
                http: HttpClient::new(options.http.clone()),
                secrets,
                store: store.clone(),
            },
            store,
            exprs: Expressions::new(),
            metrics: Metrics::default(),
            notify: Notify::new(),
            options,
            solutions: RwLock::new(IndexMap::new()),
            stopping: AtomicBool::new(false),
        })
    }

    /// Load, check and register a solution directory.
    pub fn load_dir(&self, dir: &Path) -> Result<Arc<CompiledSolution>, Vec<Diagnostic>> {
        let solution = load_solution(dir)?;
        let compiled = Arc::new(compile_solution(
            &solution,
            &self.registry,
            &self.exprs,
            &self.services.secrets,
        )?);
        let mut solutions = self.solutions.write();
        if solutions.contains_key(&compiled.name) {
            return Err(vec![Diagnostic {
                span: solution.span.clone(),
                message: format!(
                    "solution '{}' is already loaded from another directory; solution names must be unique",
                    compiled.name
                ),
            }]);
        }
        solutions.insert(compiled.name.clone(), compiled.clone());
        Ok(compiled)
    }

    /// All loaded solutions.
    pub fn solutions(&self) -> Vec<Arc<CompiledSolution>> {
        self.solutions.read().values().cloned().collect()
    }

    /// One solution by name.
    pub fn solution(&self, name: &str) -> Option<Arc<CompiledSolution>> {
        self.solutions.read().get(name).cloned()
    }

    /// A runbook by solution and name.
    pub fn runbook(
        &self,
        solution: &str,
        runbook: &str,
    ) -> Option<(Arc<CompiledSolution>, Arc<CompiledRunbook>)> {
        let s = self.solution(solution)?;
        let r = s.runbooks.get(runbook)?.clone();
        Some((s, r))
    }

    /// Ask workers and running jobs to stop at the next step boundary.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The narrow view of the engine the executor runs jobs with.
    pub fn exec_env(&self) -> ExecEnv<'_> {
        ExecEnv {
            runbooks: self,
            store: &*self.store,
            services: &self.services,
            exprs: &self.exprs,
            metrics: &self.metrics,
            limits: ExecLimits {
                step_timeout: self.options.step_timeout,
                max_invocations: self.options.max_invocations,
                max_reschedules: self.options.max_reschedules,
                max_state_bytes: self.options.max_state_bytes,
            },
            stopping: &self.stopping,
            notify: &self.notify,
        }
    }

    /// The initial executor state of a job of `runbook`: `{}`, which the executor starts with
    /// the runbook's initial variables (nothing to encode, so nothing that could fail).
    pub fn initial_state(_runbook: &CompiledRunbook) -> Value {
        Value::Object(serde_json::Map::new())
    }

    /// The trigger pipeline (spec §2.4): authenticate, parse, coerce, discard, dedup,
    /// and store the job. Returns only after the job is durably stored.
    pub async fn ingest(
        &self,
        solution: &str,
        runbook: &str,
        request: InboundRequest,
    ) -> IngestOutcome {
        self.ingest_with(solution, runbook, request, true).await
    }

    /// The trigger pipeline without inbound authentication (for `ferry run`, where the
    /// event comes from a local file rather than the network).
    pub async fn ingest_trusted(
        &self,
        solution: &str,
        runbook: &str,
        request: InboundRequest,
    ) -> IngestOutcome {
        self.ingest_with(solution, runbook, request, false).await
    }

    async fn ingest_with(
        &self,
        solution: &str,
        runbook: &str,
        request: InboundRequest,
        authenticate: bool,
    ) -> IngestOutcome {
        let outcome = self
            .ingest_inner(solution, runbook, request, authenticate)
            .await;
        let counter = match &outcome {
            IngestOutcome::Accepted { .. } => &self.metrics.events_accepted,
            IngestOutcome::Duplicate { .. } => &self.metrics.events_duplicate,
            IngestOutcome::Discarded { .. } => &self.metrics.events_discarded,
            IngestOutcome::Rejected { .. } => &self.metrics.events_rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn ingest_inner(
        &self,
        solution: &str,
        runbook: &str,
        request: InboundRequest,
        authenticate: bool,
    ) -> IngestOutcome {
        let Some((sol, rb)) = self.runbook(solution, runbook) else {
            return IngestOutcome::Rejected {
                status: 404,
                message: format!("Unknown runbook '{solution}/{runbook}'"),
            };
        };
        if let Some(conn) = rb
            .inbound
            .as_ref()
            .and_then(|c| sol.connections.get(c))
            .filter(|_| authenticate)
        {
            if let Err(e) = inbound::validate(&conn.config, &request, &self.services.secrets) {
                return trigger_error(e);
            }
        }
        let parsed = match rb.trigger.parse(&request, &rb.trigger_config).await {
            Ok(p) => p,
            Err(e) => return trigger_error(e),
        };
        let output = match rb
            .output_schema
            .resolve(&parsed.output, Some(&self.services.secrets))
        {
            Ok(v) => v,
            Err(e) => {
                return IngestOutcome::Rejected {
                    status: 400,
                    message: format!("Output invalid: {e}"),
                }
            }
        };
        // The expression context is only built when the runbook has event-time expressions.
        let needs_ctx = rb.discard_if.is_some() || rb.deduplication_id.is_some();
        let ctx = if needs_ctx {
            json!({ "trigger": output, "env": sol.env, "vars": {} })
        } else {
            Value::Null
        };
        if let Some(m) = &rb.discard_if {
            match m.eval(&self.exprs, &ctx) {
                Ok(v) if truthy(&v) => {
                    return IngestOutcome::Discarded {
                        message: "Trigger event discarded by discard_if".into(),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return IngestOutcome::Rejected {
                        status: 400,
                        message: format!("discard_if invalid: {e}"),
                    }
                }
            }
        }
        let mut dedup = output
            .get("deduplication_id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        if let Some(m) = &rb.deduplication_id {
            match m.eval(&self.exprs, &ctx) {
                Ok(Value::Null) => {}
                Ok(Value::String(s)) if s.trim().is_empty() => {}
                Ok(Value::String(s)) => dedup = Some(s),
                Ok(other) => dedup = Some(other.to_string()),
                Err(e) => {
                    return IngestOutcome::Rejected {
                        status: 400,
                        message: format!("deduplication_id invalid: {e}"),
                    }
                }
            }
        }
        let context_id = parsed
            .context_id
            .map(|s| s.chars().take(255).collect::<String>())
            .filter(|s| !s.trim().is_empty());
        let concurrency_key = match rb.concurrency {
            Some(Concurrency::PerRunbook) => Some(format!("{}/{}", sol.name, rb.name)),
            Some(Concurrency::PerJobContext) => context_id
                .as_ref()
                .map(|c| format!("{}/{}#{c}", sol.name, rb.name)),
            None => None,
        };
        let id = Uuid::now_v7();
        let job = NewJob {
            id,
            solution: sol.name.clone(),
            runbook: rb.name.clone(),
            trigger_output: output,
            context_id,
            concurrency_key,
            dedup_key: dedup,
            state: Self::initial_state(&rb),
        };
        match self.store.insert_job(job).await {
            Ok(InsertOutcome::Created) => {
                self.notify.notify_one();
                IngestOutcome::Accepted { job_id: id }
            }
            Ok(InsertOutcome::Duplicate { existing }) => {
                IngestOutcome::Duplicate { job_id: existing }
            }
            Err(e) => {
                tracing::error!(error = %e, "storing job failed");
                IngestOutcome::Rejected {
                    status: 503,
                    message: "The job could not be stored; try again.".into(),
                }
            }
        }
    }
}

impl RunbookSource for Engine {
    fn runbook(
        &self,
        solution: &str,
        runbook: &str,
    ) -> Option<(Arc<CompiledSolution>, Arc<CompiledRunbook>)> {
        Engine::runbook(self, solution, runbook)
    }
}

fn trigger_error(e: TriggerError) -> IngestOutcome {
    match e {
        TriggerError::Reject { status, message } => IngestOutcome::Rejected { status, message },
        TriggerError::Discard(message) => IngestOutcome::Discarded { message },
    }
}

/// Truthiness of an expression result.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            !(s.is_empty() || ["false", "0", "f", "off", "no"].contains(&s.as_str()))
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

//! The [`Engine`]: loaded solutions, the store, shared services and the trigger pipeline.

use std::collections::HashMap;
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
use crate::compile::{compile_solution_with, CompileOptions, CompiledRunbook, CompiledSolution};
use crate::connector::{
    ConnectionTestResult, InboundAuth, SchemaRefreshed, TestContext, NO_TESTER, REFRESH_TIMEOUT,
    TEST_TIMED_OUT, TEST_TIMEOUT,
};
use crate::executor::{ExecEnv, ExecLimits, RunbookSource};
use crate::http::{HttpClient, HttpLimits};
use crate::ingest::{InboundRequest, IngestOutcome};
use crate::kv::{trigger_namespace, Kv};
use crate::metrics::Metrics;
use crate::provision::{self, ProvisionKind, ProvisionStatus};
use crate::registry::Registry;
use crate::trigger::{Parsed, TriggerClaim, TriggerContext, TriggerError, TriggerResponse};

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
    provisioning: RwLock<HashMap<String, Vec<ProvisionStatus>>>,
    stopping: AtomicBool,
    clock: RwLock<Arc<dyn crate::scheduler::Clock>>,
    /// Versions, folders and modes of the solutions (`versions`).
    pub(crate) deploy: crate::versions::Deployments,
}

impl Engine {
    /// A new engine over `store` with the connectors of `registry` (usually
    /// [`Registry::builtin`], merged with connector crates'; tests add fakes).
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<Secrets>,
        registry: Registry,
        options: EngineOptions,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            registry,
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
            provisioning: RwLock::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            clock: RwLock::new(Arc::new(crate::scheduler::SystemClock)),
            deploy: Default::default(),
        })
    }

    /// Load, check and register a solution directory. Steps whose checks depend on cached
    /// connection data (a Xurrent connection's introspected schema) are checked against what
    /// ships with Ferry; [`Engine::load_dir_cached`] checks them against the store's cache.
    pub fn load_dir(&self, dir: &Path) -> Result<Arc<CompiledSolution>, Vec<Diagnostic>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = Self::read_for_version(dir)?;
            let (solution, mut compiled) = self.compile_dir(dir, CompileOptions::default())?;
            let after = Self::read_for_version(dir)?;
            // A folder that keeps changing: the version describes the files read last.
            if before == after || attempt >= 5 {
                compiled.version = Self::version_of_files(dir, &after);
                return self.register(&solution, compiled);
            }
        }
    }

    /// [`Engine::load_dir`], with the checks that depend on cached connection data run against
    /// the store's cache (as `ferry validate --data` does): a field only the account's own
    /// schema has is accepted once that schema is cached, and a step the cached schema refuses
    /// is refused. Without a cache entry the data that ships with Ferry is used. What `ferry
    /// serve` and `ferry run` load solutions with.
    pub async fn load_dir_cached(
        &self,
        dir: &Path,
    ) -> Result<Arc<CompiledSolution>, Vec<Diagnostic>> {
        let (solution, mut compiled, version, files) =
            self.compile_dir_cached_versioned(dir).await?;
        compiled.version = version;
        // Its files are stored before it serves, so that its jobs can run on it after a
        // restart (see `versions`).
        if let Err(e) = self.store_version(&compiled, &files).await {
            return Err(vec![Diagnostic {
                span: ferry_core::model::Span::new(dir.join("solution.yaml"), 1),
                message: e,
            }]);
        }
        let sol = self.register(&solution, compiled)?;
        self.deploy.remember_dir(&sol.name, dir);
        self.deploy.remember_git(&sol.name, sol.version.git.clone());
        Ok(sol)
    }

    /// Compile and check a folder as [`Engine::load_dir_cached`] does, with its version and
    /// files (read before and after compiling, until both reads agree), without registering it.
    pub(crate) async fn compile_dir_cached_versioned(
        &self,
        dir: &Path,
    ) -> Result<
        (
            ferry_core::model::Solution,
            CompiledSolution,
            crate::versions::SolutionVersion,
            crate::versions::SolutionFiles,
        ),
        Vec<Diagnostic>,
    > {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let before = Self::read_for_version(dir)?;
            let (solution, compiled) = self.compile_dir_cached(dir).await?;
            let after = Self::read_for_version(dir)?;
            if before == after || attempts >= 5 {
                if before != after {
                    tracing::warn!(dir = %dir.display(), "the solution folder kept changing while it was loaded; its version describes the files read last");
                }
                let version = Self::version_of_files(dir, &after);
                return Ok((solution, compiled, version, after));
            }
        }
    }

    /// Compile a folder and run the checks that depend on cached connection data.
    pub(crate) async fn compile_dir_cached(
        &self,
        dir: &Path,
    ) -> Result<(ferry_core::model::Solution, CompiledSolution), Vec<Diagnostic>> {
        let options = CompileOptions {
            defer_cached_checks: true,
        };
        let (solution, compiled) = self.compile_dir(dir, options)?;
        let mut problems = Vec::new();
        for d in
            crate::schemas::check_cached(self.store.as_ref(), &self.services.secrets, &compiled)
                .await
        {
            match d {
                Ok(warning) => tracing::debug!(%warning, "solution.check"),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            problems.sort_by(|a, b| a.span.cmp(&b.span));
            problems.dedup();
            return Err(problems);
        }
        Ok((solution, compiled))
    }

    fn compile_dir(
        &self,
        dir: &Path,
        options: CompileOptions,
    ) -> Result<(ferry_core::model::Solution, CompiledSolution), Vec<Diagnostic>> {
        let solution = load_solution(dir)?;
        let compiled = compile_solution_with(
            &solution,
            &self.registry,
            &self.exprs,
            &self.services.secrets,
            options,
        )?;
        Ok((solution, compiled))
    }

    fn register(
        &self,
        solution: &ferry_core::model::Solution,
        compiled: CompiledSolution,
    ) -> Result<Arc<CompiledSolution>, Vec<Diagnostic>> {
        let compiled = Arc::new(compiled);
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
        self.provisioning
            .write()
            .insert(compiled.name.clone(), provision::initial_status(&compiled));
        Ok(compiled)
    }

    /// The map of current versions, for the atomic swap of a reload.
    pub(crate) fn solutions_mut(
        &self,
    ) -> parking_lot::RwLockWriteGuard<'_, IndexMap<String, Arc<CompiledSolution>>> {
        self.solutions.write()
    }

    /// Every item of a (reloaded) solution is pending provisioning again.
    pub(crate) fn reset_provisioning(&self, sol: &CompiledSolution) {
        self.provisioning
            .write()
            .insert(sol.name.clone(), provision::initial_status(sol));
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

    /// Test a connection (runtime_model §5.5): `None` when the solution or connection is
    /// unknown. The connector's test runs for at most [`TEST_TIMEOUT`].
    pub async fn test_connection(
        &self,
        solution: &str,
        connection: &str,
    ) -> Option<ConnectionTestResult> {
        let sol = self.solution(solution)?;
        let conn = sol.connections.get(connection)?;
        let outbound =
            sol.directions.get(connection) == Some(&ferry_core::model::Direction::Outbound);
        let connector = self.registry.get_connector(&conn.connector);
        let Some(connector) = connector.filter(|c| outbound && c.has_tester()) else {
            return Some(ConnectionTestResult::error(NO_TESTER));
        };
        let ctx = TestContext {
            connection: conn,
            services: &self.services,
            connector: connector.as_ref(),
        };
        // A tester that panics is an `error` result, not a dropped request.
        let test =
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(connector.test(&ctx)));
        let result = match tokio::time::timeout(TEST_TIMEOUT, test).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => ConnectionTestResult::error("The connection test failed unexpectedly."),
            Err(_) => ConnectionTestResult::error(TEST_TIMED_OUT),
        };
        // The message is shown to users: never a secret.
        let result = ConnectionTestResult {
            message: ferry_core::secrets::redact_str(&result.message),
            ..result
        };
        tracing::info!(
            solution,
            connection,
            status = result.status.as_str(),
            message = %result.message,
            "connection test"
        );
        Some(result)
    }

    /// Refresh the cached schema of an outbound connection ([`Connector::refresh_schema`]),
    /// for at most [`REFRESH_TIMEOUT`].
    pub async fn refresh_schema(
        &self,
        solution: &str,
        connection: &str,
    ) -> Result<SchemaRefreshed, RefreshError> {
        let sol = self
            .solution(solution)
            .ok_or_else(|| RefreshError::NotFound(format!("solution '{solution}' not found")))?;
        let conn = sol.connections.get(connection).ok_or_else(|| {
            RefreshError::NotFound(format!(
                "connection '{connection}' not found in solution '{solution}'"
            ))
        })?;
        let outbound =
            sol.directions.get(connection) == Some(&ferry_core::model::Direction::Outbound);
        let connector = self
            .registry
            .get_connector(&conn.connector)
            .filter(|c| outbound && c.has_schema())
            .ok_or_else(|| {
                RefreshError::NoSchema(format!(
                    "connection '{connection}' ({} {}) has no schema to refresh; only outbound connections of connectors with a schema (xurrent) have one",
                    conn.connector,
                    if outbound { "outbound" } else { "inbound" }
                ))
            })?;
        let ctx = TestContext {
            connection: conn,
            services: &self.services,
            connector: connector.as_ref(),
        };
        let result =
            match tokio::time::timeout(REFRESH_TIMEOUT, connector.refresh_schema(&ctx)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "the schema refresh timed out after {} s",
                    REFRESH_TIMEOUT.as_secs()
                )),
            };
        match result {
            Ok(r) => {
                tracing::info!(
                    solution,
                    connection,
                    types = r.types,
                    generation = r.generation,
                    ms = r.duration.as_millis() as u64,
                    "connection schema refreshed"
                );
                Ok(r)
            }
            Err(e) => {
                let message = ferry_core::secrets::redact_str(&e);
                tracing::warn!(solution, connection, error = %message, "connection schema refresh failed");
                Err(RefreshError::Failed(message))
            }
        }
    }

    /// The provisioning state of a solution's connections and triggers (empty when unknown).
    pub fn provisioning(&self, solution: &str) -> Vec<ProvisionStatus> {
        self.provisioning
            .read()
            .get(solution)
            .cloned()
            .unwrap_or_default()
    }

    /// Change one item's provisioning state; returns the new state.
    pub(crate) fn update_provisioning(
        &self,
        solution: &str,
        kind: ProvisionKind,
        name: &str,
        f: impl FnOnce(&mut ProvisionStatus),
    ) -> Option<ProvisionStatus> {
        let mut all = self.provisioning.write();
        let item = all
            .get_mut(solution)?
            .iter_mut()
            .find(|s| s.kind == kind && s.name == name)?;
        f(item);
        Some(item.clone())
    }

    /// Start provisioning every loaded solution in the background (one task per solution,
    /// so that one failing provision keeps no other solution waiting). `public_url` is the
    /// base of the trigger URLs handed to trigger hooks.
    pub fn start_provisioning(
        self: &Arc<Self>,
        public_url: &str,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.deploy.set_public_url(public_url);
        self.solutions()
            .iter()
            .map(|sol| {
                tokio::spawn(provision::provision_solution(
                    self.clone(),
                    sol.name.clone(),
                    public_url.to_string(),
                ))
            })
            .collect()
    }

    /// Deprovision every provisioned connection and trigger of every solution (on shutdown).
    pub async fn deprovision_all(&self, public_url: &str) {
        for sol in self.solutions() {
            provision::deprovision_solution(self, &sol.name, public_url).await;
        }
    }

    /// Ask workers and running jobs to stop at the next step boundary.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// The clock schedules run on (the system clock unless [`Engine::set_clock`] replaced it).
    pub fn clock(&self) -> Arc<dyn crate::scheduler::Clock> {
        self.clock.read().clone()
    }

    /// Replace the clock schedules run on (tests: see [`crate::scheduler::FileClock`]).
    pub fn set_clock(&self, clock: Arc<dyn crate::scheduler::Clock>) {
        *self.clock.write() = clock;
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
            lease_owner: None,
            mocks: None,
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
            IngestOutcome::Responded { .. } => &self.metrics.events_answered,
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
        if authenticate && rb.trigger.internal_only() {
            return IngestOutcome::Rejected {
                status: 404,
                message: format!(
                    "Runbook '{solution}/{runbook}' is started by its schedule, not by requests"
                ),
            };
        }
        let connection = rb.inbound.as_ref().and_then(|c| sol.connections.get(c));
        let store = self.store.as_ref();
        let secrets = self.services.secrets.as_ref();
        if let Some(conn) = connection.filter(|_| authenticate) {
            if let Some(connector) = self.registry.get_connector(&conn.connector) {
                let auth = InboundAuth {
                    request: &request,
                    connection: conn,
                    kv: Kv::new(store, secrets, conn.namespace.clone()),
                    secrets,
                };
                match guarded(connector.authenticate_inbound(&auth), solution, runbook).await {
                    Ok(()) => {}
                    Err(e) => return trigger_error(e),
                }
            }
        }
        let ctx = TriggerContext {
            request: &request,
            config: &rb.trigger_config,
            connection,
            http: &self.services.http,
            kv: Kv::new(store, secrets, trigger_namespace(&sol.name, &rb.name)),
            connection_kv: connection.map(|c| Kv::new(store, secrets, c.namespace.clone())),
            secrets,
        };
        let mut parsed = match guarded(rb.trigger.parse(&ctx), solution, runbook).await {
            Ok(Parsed::Event(p)) => p,
            Ok(Parsed::Respond(response)) => return IngestOutcome::Responded { response },
            Err(e) => return trigger_error(e),
        };
        // Draft mode and the test header (events from the network only). A request the
        // trigger answers itself (a webhook handshake) creates no job and is answered above.
        let test = match authenticate.then(|| self.admit(solution, &request)) {
            None | Some(Ok(false)) => false,
            Some(Ok(true)) => true,
            Some(Err(refused)) => return refused,
        };
        let claims = std::mem::take(&mut parsed.claims);
        let computed = match crate::schemas::trigger_output_schema(&self.services, &sol, &rb).await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(solution, runbook, error = %e, "trigger output schema");
                return IngestOutcome::Rejected {
                    status: 503,
                    message: format!("The trigger's output schema could not be computed: {e}"),
                };
            }
        };
        let output = match computed
            .as_ref()
            .unwrap_or(&rb.output_schema)
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
        let needs_ctx =
            rb.discard_if.is_some() || rb.deduplication_id.is_some() || rb.respond_with.is_some();
        let ctx = if needs_ctx {
            json!({ "trigger": output, "env": sol.env, "vars": {} })
        } else {
            Value::Null
        };
        if let Some(m) = &rb.discard_if {
            match m.eval(&self.exprs, &ctx) {
                Ok(v) if truthy(&v) => {
                    if let Some(rejected) = self.claim_alone(&claims, solution, runbook).await {
                        return rejected;
                    }
                    return IngestOutcome::Discarded {
                        message: "Trigger event discarded by discard_if".into(),
                    };
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
        // The custom answer is computed before the job is stored, so that a broken
        // `respond_with` rejects the event instead of answering wrongly for a stored job.
        let response = match &rb.respond_with {
            None => None,
            Some(m) => {
                let mut ctx = ctx;
                if let Value::Object(o) = &mut ctx {
                    o.insert(
                        "job".into(),
                        json!({
                            "uuid": id.to_string(),
                            "id": id.to_string(),
                            "context_identifier": context_id,
                        }),
                    );
                }
                match m
                    .eval(&self.exprs, &ctx)
                    .map_err(|e| e.to_string())
                    .and_then(|v| custom_response(&v))
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(solution, runbook, error = %e, "respond_with failed");
                        return IngestOutcome::Rejected {
                            status: 500,
                            message: format!("respond_with invalid: {e}"),
                        };
                    }
                }
            }
        };
        let job = NewJob {
            id,
            solution: sol.name.clone(),
            runbook: rb.name.clone(),
            trigger_output: output,
            context_id,
            concurrency_key,
            dedup_key: dedup,
            state: Self::initial_state(&rb),
            solution_version: Some(sol.version.id.clone()).filter(|v| !v.is_empty()),
            test,
            claims: claims.iter().map(|c| c.claim.clone()).collect(),
        };
        match self.store.insert_job(job).await {
            Ok(InsertOutcome::Created) => {
                self.notify.notify_one();
                IngestOutcome::Accepted {
                    job_id: id,
                    response,
                }
            }
            Ok(InsertOutcome::Duplicate { existing }) => {
                IngestOutcome::Duplicate { job_id: existing }
            }
            Ok(InsertOutcome::ClaimTaken { index, key }) => match claims.get(index) {
                Some(claim) => claim_held(claim, solution, runbook),
                None => {
                    tracing::error!(
                        solution,
                        runbook,
                        index,
                        key,
                        "the store names an unknown claim"
                    );
                    IngestOutcome::Rejected {
                        status: 503,
                        message: "The job could not be stored; try again.".into(),
                    }
                }
            },
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

impl Engine {
    /// Make the claims of an event that creates no job (it is discarded), all or none, as
    /// `insert_job` would have with the job. Returns the rejection when a key is held or the
    /// store fails.
    async fn claim_alone(
        &self,
        claims: &[TriggerClaim],
        solution: &str,
        runbook: &str,
    ) -> Option<IngestOutcome> {
        let mut made = Vec::new();
        let mut refused = None;
        for c in claims {
            let k = &c.claim;
            match self
                .store
                .kv_put_if_absent(&k.ns, &k.key, &k.value, k.ttl)
                .await
            {
                Ok(true) => made.push(k),
                Ok(false) => {
                    refused = Some(claim_held(c, solution, runbook));
                    break;
                }
                Err(e) => {
                    tracing::error!(solution, runbook, error = %e, key = %k.key, "claiming a key/value entry failed");
                    refused = Some(IngestOutcome::Rejected {
                        status: 503,
                        message: format!("The key/value store is unavailable: {e}; try again."),
                    });
                    break;
                }
            }
        }
        if refused.is_some() {
            for k in made {
                if let Err(e) = self.store.kv_delete(&k.ns, &k.key).await {
                    tracing::warn!(solution, runbook, error = %e, key = %k.key, "releasing a claim failed");
                }
            }
        }
        refused
    }
}

/// The rejection of an event whose claimed key is held.
fn claim_held(claim: &TriggerClaim, solution: &str, runbook: &str) -> IngestOutcome {
    tracing::warn!(
        solution,
        runbook,
        status = claim.status,
        detail = %claim.detail,
        "event rejected: its claim on '{}' is held",
        claim.claim.key
    );
    IngestOutcome::Rejected {
        status: claim.status,
        message: claim.message.clone(),
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

    fn runbook_for_job(
        &self,
        job: &ferry_store::JobRecord,
    ) -> Result<(Arc<CompiledSolution>, Arc<CompiledRunbook>), String> {
        self.runbook_of_job(job)
    }
}

/// Build the answer of `respond_with` from its evaluated value `{status, headers, body}`.
/// A string body is sent as it is (`text/plain` unless a content type is given); any other
/// JSON value as JSON.
pub fn custom_response(v: &Value) -> Result<TriggerResponse, String> {
    let status = match v.get("status") {
        None | Some(Value::Null) => 200,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse::<u64>().unwrap_or(0),
        Some(other) => return Err(format!("status: {other} is not an HTTP status")),
    };
    if !(100..=599).contains(&status) {
        return Err(format!(
            "status: {status} is not an HTTP status (100 to 599)"
        ));
    }
    let mut headers = Vec::new();
    match v.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                if ferry_core::secrets::contains_envelope(&value) {
                    return Err(format!(
                        "headers.{name}: a secret cannot be sent in an answer"
                    ));
                }
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("headers: '{name}' is not a header name"))?;
                reqwest::header::HeaderValue::from_str(&value)
                    .map_err(|_| format!("headers.{name}: not a valid header value"))?;
                headers.push((name.to_ascii_lowercase(), value));
            }
        }
        Some(_) => return Err("headers: must be a mapping of names to values".into()),
    }
    let has_type = headers.iter().any(|(k, _)| k == "content-type");
    let (body, content_type) = match v.get("body") {
        None | Some(Value::Null) => (String::new(), "text/plain; charset=utf-8"),
        Some(Value::String(s)) => (s.clone(), "text/plain; charset=utf-8"),
        Some(other) => (other.to_string(), "application/json"),
    };
    if ferry_core::secrets::contains_envelope(&body) {
        return Err("body: a secret cannot be sent in an answer".into());
    }
    if !has_type {
        headers.push(("content-type".into(), content_type.into()));
    }
    Ok(TriggerResponse {
        status: status as u16,
        headers,
        body: body.into(),
    })
}

/// Run a connector's request hook; a panic becomes a logged 500 instead of a dropped request.
async fn guarded<T>(
    hook: impl std::future::Future<Output = Result<T, TriggerError>>,
    solution: &str,
    runbook: &str,
) -> Result<T, TriggerError> {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(hook).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(
                solution,
                runbook,
                "a trigger or inbound authentication hook panicked"
            );
            Err(TriggerError::Reject {
                status: 500,
                message: "The trigger failed unexpectedly.".into(),
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_responses_are_built_and_checked() {
        let r = custom_response(&json!({"status": "202", "body": {"ok": true}})).unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(&r.body[..], br#"{"ok":true}"#);
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        let r = custom_response(
            &json!({"headers": {"Content-Type": "text/xml", "x-n": 3}, "body": "<a/>"}),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_string(), "text/xml".to_string()),
                ("x-n".to_string(), "3".to_string())
            ]
        );
        let err = |v: Value| custom_response(&v).unwrap_err();
        assert_eq!(
            err(json!({"status": 99})),
            "status: 99 is not an HTTP status (100 to 599)"
        );
        assert_eq!(
            err(json!({"status": true})),
            "status: true is not an HTTP status"
        );
        assert_eq!(
            err(json!({"headers": {"bad name": "x"}})),
            "headers: 'bad name' is not a header name"
        );
        assert_eq!(
            err(json!({"headers": ["x"]})),
            "headers: must be a mapping of names to values"
        );
        let secrets = Secrets::from_master_key(&[1u8; 32]);
        let sealed = secrets.seal("hunter2");
        assert_eq!(
            err(json!({"body": format!("token {sealed}")})),
            "body: a secret cannot be sent in an answer"
        );
        assert_eq!(
            err(json!({"headers": {"x-t": sealed}})),
            "headers.x-t: a secret cannot be sent in an answer"
        );
    }

    #[test]
    fn provision_backoff_doubles_up_to_five_minutes() {
        use crate::provision::backoff;
        let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(1000).as_secs(), 300);
    }
}

/// Why [`Engine::refresh_schema`] did not refresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// No such solution or connection.
    #[error("{0}")]
    NotFound(String),
    /// The connection has no schema (not an outbound connection of a connector with one).
    #[error("{0}")]
    NoSchema(String),
    /// Fetching the schema failed (the message names the cause, secrets redacted).
    #[error("{0}")]
    Failed(String),
}

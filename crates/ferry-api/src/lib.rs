//! The types of Ferry's management API under `/api/v1`.
//!
//! The server (`ferry-server`) answers with these types and the CLI (`ferry jobs …`) reads them,
//! so both always agree on the JSON. Every type derives [`utoipa::ToSchema`]; the server builds
//! its OpenAPI document (`GET /api/v1/openapi.json`) from them and from its handlers.
//!
//! Values that come from a solution or an event (trigger output, step input and outputs,
//! connection config) are arbitrary JSON and are typed as [`serde_json::Value`]; secrets in them
//! are always shown as `[secret]`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// An error answer: `{"error": "…"}`. For a bad parameter the message names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// Lifecycle status of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to be claimed by a worker.
    Queued,
    /// Being run by a worker.
    Running,
    /// Rescheduled; runs again at `next_run_at`.
    Waiting,
    /// Completed.
    Finished,
    /// Failed; can be re-run.
    Failed,
}

impl JobStatus {
    /// The serialized name (`"queued"`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of one step invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step completed.
    Completed,
    /// The step failed.
    Failed,
    /// The step asked to run again later.
    Rescheduled,
    /// The step ended the job (Finish).
    Finished,
}

impl StepStatus {
    /// The serialized name.
    pub fn as_str(&self) -> &'static str {
        match self {
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Rescheduled => "rescheduled",
            StepStatus::Finished => "finished",
        }
    }
}

/// A job (secrets redacted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Job id (the `job_uuid` answered to the event).
    pub id: Uuid,
    /// Solution name.
    pub solution: String,
    /// Runbook name.
    pub runbook: String,
    /// Current status.
    pub status: JobStatus,
    /// Job context identifier, if the trigger set one.
    pub context_id: Option<String>,
    /// Error message of a failed job.
    pub error: Option<String>,
    /// How many times a worker has claimed the job.
    pub attempts: i64,
    /// When the event was accepted.
    pub created_at: DateTime<Utc>,
    /// First claim by a worker.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job finished or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// For a waiting job: when it runs again.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The trigger's output (the event), secrets shown as `[secret]`.
    pub trigger_output: Value,
    /// The version of the solution the job runs with (absent for jobs stored before versions
    /// were recorded).
    #[serde(default)]
    pub solution_version: Option<String>,
    /// A test job: its event carried the header `x-ferry-test: 1`.
    #[serde(default)]
    pub test: bool,
}

/// One log line written by a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepLog {
    /// Time of the log call.
    pub at: DateTime<Utc>,
    /// Level (`info`, `warn`, …).
    pub level: String,
    /// The message (secrets redacted).
    pub message: String,
}

/// One step invocation of a job (secrets redacted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// Position in the job, 1-based.
    pub seq: i64,
    /// Step id in the runbook.
    pub step_id: String,
    /// Invocation number of this step within the job (iterations, retries).
    pub invocation: i64,
    /// Outcome.
    pub status: StepStatus,
    /// Resolved input.
    pub input: Value,
    /// Outputs.
    pub outputs: Value,
    /// Log lines.
    pub logs: Vec<StepLog>,
    /// Error message of a failed step.
    pub error: Option<String>,
    /// Start of the invocation.
    pub started_at: DateTime<Utc>,
    /// End of the invocation.
    pub finished_at: DateTime<Utc>,
    /// `finished_at − started_at` in milliseconds.
    pub duration_ms: f64,
}

/// A job with every step: `GET /api/v1/jobs/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Its steps in order.
    pub steps: Vec<Step>,
    /// What is known of the solution version the job runs with (its git commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SolutionVersion>,
}

/// A page of jobs, newest first: `GET /api/v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Answer of `POST /api/v1/jobs/{id}/rerun`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rerun {
    /// The job.
    pub id: Uuid,
    /// Always `queued`.
    pub status: JobStatus,
}

/// Concurrency mode of a runbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Concurrency {
    /// One job of the runbook at a time.
    PerRunbook,
    /// One job at a time per job context identifier.
    PerJobContext,
}

/// The trigger of a runbook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TriggerInfo {
    /// Trigger type (`<connector>.<trigger>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The URL events are posted to.
    pub url: String,
    /// Name of the inbound connection, if any.
    pub connection: Option<String>,
}

/// A loaded runbook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Runbook {
    /// Runbook name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Its trigger.
    pub trigger: TriggerInfo,
    /// Concurrency mode, if any.
    pub concurrency: Option<Concurrency>,
    /// Step ids in file order.
    pub steps: Vec<String>,
    /// Runbook variable ids.
    pub variables: Vec<String>,
}

/// Direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Used by a trigger.
    Inbound,
    /// Used by actions.
    Outbound,
}

/// A connection of a solution (secret values shown as `[secret]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    /// Connection name.
    pub name: String,
    /// Connector it belongs to.
    pub connector: String,
    /// Inbound or outbound; absent while no runbook uses it.
    pub direction: Option<Direction>,
    /// Its configuration, secrets redacted.
    pub config: Value,
}

/// Where a connection's or trigger's provisioning stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionKind {
    /// A connection.
    Connection,
    /// A runbook's trigger.
    Trigger,
}

/// The provisioning state of one connection or trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProvisionStatus {
    /// Connection or trigger.
    pub kind: ProvisionKind,
    /// The connection's name, or the runbook's name for its trigger.
    pub name: String,
    /// Current state.
    pub state: ProvisionState,
    /// Provision attempts so far.
    pub attempts: u32,
    /// The message of the last failed attempt.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (failed items).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Outcome class of a connection test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    /// The test ran and passed.
    Success,
    /// The test ran and the external system said no (e.g. credentials rejected).
    Failed,
    /// The test could not be executed.
    Error,
}

/// Answer of `POST /api/v1/connections/{solution}/{name}/test` (200 whatever the outcome).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionTest {
    /// Outcome class.
    pub status: TestStatus,
    /// Message for the user (never contains secrets).
    pub message: String,
}

/// Answer of `POST /api/v1/connections/{solution}/{name}/refresh-schema`: the connection's
/// schema was fetched again and replaced the cached one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SchemaRefresh {
    /// Solution name.
    pub solution: String,
    /// Connection name.
    pub connection: String,
    /// Named types in the new schema.
    pub types: u64,
    /// The new generation of derived schemas (every older one is orphaned).
    pub generation: u64,
    /// How long introspecting and caching took, in milliseconds.
    pub duration_ms: u64,
}

/// A loaded solution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Solution {
    /// Solution name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Its runbooks.
    pub runbooks: Vec<Runbook>,
    /// Its connections.
    pub connections: Vec<Connection>,
    /// Provisioning state of its connections and triggers.
    pub provisioning: Vec<ProvisionStatus>,
    /// The version served.
    pub version: SolutionVersion,
    /// `live`, or `draft` (only test events are accepted, schedules do not fire).
    pub mode: SolutionMode,
    /// The folder it is loaded (and reloaded) from.
    #[serde(default)]
    pub directory: Option<String>,
}

/// The version of a solution: a content hash of its files, with the git commit it was loaded
/// from when its folder is in a git checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SolutionVersion {
    /// The version id: the first 16 hex digits of the SHA-256 content hash.
    pub id: String,
    /// The commit of `HEAD` of the git checkout the folder was in.
    pub git_commit: Option<String>,
    /// Whether the folder had uncommitted changes (with `git_commit`).
    pub git_dirty: Option<bool>,
    /// When the version was loaded.
    pub loaded_at: Option<DateTime<Utc>>,
}

/// How a solution is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SolutionMode {
    /// Only events with the header `x-ferry-test: 1` are accepted; schedules do not fire.
    Draft,
    /// Every event is accepted; schedules fire.
    Live,
}

impl SolutionMode {
    /// `draft` or `live`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SolutionMode::Draft => "draft",
            SolutionMode::Live => "live",
        }
    }
}

/// Answer of `POST /api/v1/solutions/{solution}/promote` and `…/demote`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModeChange {
    /// Solution name.
    pub solution: String,
    /// The mode now.
    pub mode: SolutionMode,
    /// The mode before.
    pub previous: SolutionMode,
}

/// What a reload did to one solution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadStatus {
    /// The folder holds the version already served.
    Unchanged,
    /// A new version serves from now on.
    Reloaded,
    /// The folder has problems (see `errors`); the old version keeps serving.
    Failed,
}

/// One problem of a folder that failed to reload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadProblem {
    /// The file, when the problem has a place.
    pub file: Option<String>,
    /// Its 1-based line.
    pub line: Option<u64>,
    /// The message.
    pub message: String,
}

/// One solution's result of a reload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadEntry {
    /// Solution name.
    pub solution: String,
    /// Its folder.
    pub directory: String,
    /// What happened.
    pub status: ReloadStatus,
    /// The version serving now.
    pub version: String,
    /// With `reloaded`: the version served before.
    pub previous_version: Option<String>,
    /// With `failed`: the problems, `file:line` where they have one.
    pub errors: Vec<ReloadProblem>,
}

/// Answer of `POST /api/v1/reload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadReport {
    /// Every solution folder, in load order.
    pub solutions: Vec<ReloadEntry>,
}

/// `GET /api/v1/solutions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SolutionList {
    /// Every loaded solution.
    pub solutions: Vec<Solution>,
}

/// `GET /api/v1/solutions/{solution}/runbooks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunbookList {
    /// The solution's runbooks.
    pub runbooks: Vec<Runbook>,
}

/// `GET /api/v1/solutions/{solution}/connections`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    /// The solution's connections.
    pub connections: Vec<Connection>,
}

/// A runbook that runs on a schedule, with its next run times (`GET /api/v1/schedules`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// Solution name.
    pub solution: String,
    /// Runbook name.
    pub runbook: String,
    /// The rule in words, with its time zone, e.g. `every day at 02:30 in Europe/Amsterdam`.
    pub description: String,
    /// The time zone the rule is read in (IANA name).
    pub time_zone: String,
    /// What happens to a tick missed while Ferry was down: `one` (run once at start-up) or
    /// `skip` (log and skip).
    pub catch_up: String,
    /// Whether the schedule is disabled (it never fires).
    pub disabled: bool,
    /// Whether it is paused because its solution is in draft mode (it fires once the solution
    /// is promoted, from that moment on).
    #[serde(default)]
    pub paused: bool,
    /// The last tick that created a job.
    pub last_tick: Option<DateTime<Utc>>,
    /// The next run times, in order (empty when the schedule has ended or is disabled).
    pub next_runs: Vec<DateTime<Utc>>,
}

/// `GET /api/v1/schedules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Every scheduled runbook of the loaded solutions.
    pub schedules: Vec<Schedule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_detail_reads_back_what_it_writes_with_the_job_fields_at_the_top() {
        let detail = JobDetail {
            job: Job {
                id: Uuid::nil(),
                solution: "s".into(),
                runbook: "r".into(),
                status: JobStatus::Failed,
                context_id: None,
                error: Some("boom".into()),
                attempts: 1,
                created_at: Utc::now(),
                started_at: None,
                finished_at: None,
                next_run_at: None,
                trigger_output: serde_json::json!({"a": 1}),
                solution_version: Some("0123456789abcdef".into()),
                test: true,
            },
            steps: vec![],
            version: None,
        };
        let v = serde_json::to_value(&detail).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"], "boom");
        assert!(v["steps"].is_array());
        let back: JobDetail = serde_json::from_value(v).unwrap();
        assert_eq!(back, detail);
    }
}

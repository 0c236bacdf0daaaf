//! `ferry schedules list` against a running server: every scheduled runbook with its rule,
//! time zone, catch-up rule, last tick and next run times.

use std::process::ExitCode;

use crate::api_client::{parse, Refused, ServerArgs};

/// Arguments of `ferry schedules`.
#[derive(clap::Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    command: SchedulesCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum SchedulesCommand {
    /// List the scheduled runbooks with their next run times.
    List {
        /// How many next run times to show per schedule (1..100).
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
}

/// Run the sub-command.
pub async fn schedules(args: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let SchedulesCommand::List { count } = &args.command;
    let request = api
        .http()
        .get(format!("{}/api/v1/schedules", api.base()))
        .query(&[("count", count.to_string())]);
    let bytes = match api.send(request).await? {
        Ok(bytes) => bytes,
        Err(Refused { status, message }) => {
            eprintln!("error ({status}): {message}");
            return Ok(ExitCode::from(1));
        }
    };
    let list: ferry_api::ScheduleList = parse(&bytes)?;
    if args.server.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.schedules.is_empty() {
        println!("no scheduled runbooks");
    }
    for s in &list.schedules {
        println!("{}/{}: {}", s.solution, s.runbook, s.description);
        if s.paused {
            println!(
                "  paused: the solution is in draft mode (`ferry promote {}`)",
                s.solution
            );
        }
        println!(
            "  catch_up: {}   last tick: {}",
            s.catch_up,
            s.last_tick
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "none yet".into())
        );
        if s.next_runs.is_empty() {
            println!("  next runs: none (ended or disabled)");
        }
        let tz: Option<chrono_tz::Tz> = s.time_zone.parse().ok();
        for t in &s.next_runs {
            match tz {
                Some(tz) => println!(
                    "  next: {}  ({})",
                    t.to_rfc3339(),
                    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
                ),
                None => println!("  next: {}", t.to_rfc3339()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

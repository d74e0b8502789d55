//! The `admit` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use admit_core::{Email, WorkspaceId};
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat, Sources};
use crate::startup::{App, shutdown_signal};
use crate::verify;

#[derive(Debug, Parser)]
#[command(
    name = "admit",
    version,
    about = "Paid-access provisioning for SaaS products that bill through Stripe"
)]
pub struct Cli {
    /// TOML configuration file (overrides the embedded defaults; ADMIT_* variables override it).
    #[arg(long, global = true, env = "ADMIT_CONFIG")]
    config: Option<PathBuf>,

    /// Log format; overrides ADMIT_LOG_FORMAT.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (webhook ingress, /v1 API, health and metrics).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Check that an email has access to a workspace (and its plan) right now.
    /// Exits 0 for PASS, 1 for HOLD, 2 when no verdict could be reached.
    Verify(VerifyArgs),
    /// Operators' view of outgoing email: list messages, or queue one again.
    #[command(subcommand)]
    Outbox(OutboxCommand),
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List messages, newest first.
    List {
        /// pending, sent, dead, superseded (default: all).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Queue a message (dead, sent or superseded) to be sent again.
    Resend {
        /// The message id (`admit outbox list` shows it).
        id: i64,
    },
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Workspace id.
    #[arg(long, value_parser = parse_workspace)]
    workspace: WorkspaceId,
    /// Email address of the person whose access is checked.
    #[arg(long, value_parser = parse_email)]
    email: Email,
    /// Plan key the workspace is expected to be on (a key of the catalog, e.g. `pro`).
    #[arg(long)]
    plan: Option<String>,
    /// Print the report as one line of JSON.
    #[arg(long)]
    json: bool,
}

fn parse_workspace(raw: &str) -> Result<WorkspaceId, admit_core::IdError> {
    WorkspaceId::parse(raw)
}

fn parse_email(raw: &str) -> Result<Email, admit_core::EmailError> {
    Email::parse(raw)
}

/// Runs a command and reports a failure on stderr. `serve` and `migrate`
/// exit 1 on failure; `verify` keeps 1 for HOLD, so it exits 2 when it
/// reaches no verdict.
pub async fn run(cli: Cli) -> ExitCode {
    let failure = match cli.command {
        Command::Verify(_) => ExitCode::from(verify::NO_VERDICT),
        Command::Serve | Command::Migrate | Command::Outbox(_) => ExitCode::FAILURE,
    };
    match execute(cli).await {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` keeps the whole cause chain on one line.
            eprintln!("admit: {error:#}");
            failure
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&Sources::from_process(cli.config.clone()))?;
    if let Some(format) = cli.log_format {
        config.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    crate::telemetry::init(config.log_format, &config.log);
    match cli.command {
        Command::Serve => serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => migrate(config).await.map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => run_verify(config, args).await,
        Command::Outbox(command) => outbox(config, command).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn outbox(config: Config, command: OutboxCommand) -> anyhow::Result<()> {
    let store = admit_store::connect(&config.database_url).await?;
    store.check_ready().await?;
    let mut out = std::io::stdout().lock();
    match command {
        OutboxCommand::List { state, limit } => {
            if let Some(state) = state.as_deref()
                && !crate::http::OUTBOX_STATES.contains(&state)
            {
                anyhow::bail!(
                    "--state must be one of {}",
                    crate::http::OUTBOX_STATES.join(", ")
                );
            }
            let rows = store
                .list_outbox(state.as_deref(), limit.clamp(1, 1000))
                .await?;
            writeln!(
                out,
                "{:>6}  {:<10}  {:<22}  {:>8}  {:<32}  last error",
                "id", "state", "kind", "attempts", "recipient"
            )?;
            for row in rows {
                writeln!(
                    out,
                    "{:>6}  {:<10}  {:<22}  {:>8}  {:<32}  {}",
                    row.id,
                    row.state,
                    row.kind,
                    row.attempts,
                    row.recipient,
                    row.last_error.unwrap_or_default()
                )?;
            }
        }
        OutboxCommand::Resend { id } => {
            let row = store
                .resend(id, "cli", crate::clock::Clock::now(&SystemClock))
                .await?;
            writeln!(
                out,
                "message {} ({}) is {} again; the running server sends it within seconds",
                row.id, row.kind, row.state
            )?;
        }
    }
    store.close().await;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if let Some(notice) = config.development_notice() {
        // The terminal, not the log: logs are shipped and kept.
        let _ = writeln!(std::io::stderr(), "{notice}");
    }
    let listen = config.listen;
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (is another process using it? set ADMIT_LISTEN)")
        })?;
    tracing::info!(address = %listener.local_addr()?, "admit is listening");
    app.run(listener, shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = admit_store::connect(&config.database_url).await?;
    store.migrate().await.context("migration failed")?;
    store.check_ready().await?;
    tracing::info!("database is migrated");
    store.close().await;
    Ok(())
}

async fn run_verify(config: Config, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.plan {
        None => None,
        Some(plan) => match config.catalog.get_str(&plan) {
            Some(known) => Some(known.key.clone()),
            None => {
                let keys: Vec<&str> = config.catalog.plans().map(|p| p.key.as_str()).collect();
                anyhow::bail!(
                    "--plan {plan:?} is not a plan of the catalog (plans: {})",
                    keys.join(", ")
                );
            }
        },
    };
    let request = verify::Request {
        workspace: args.workspace,
        email: args.email,
        plan,
    };
    let database = crate::config::redact_url(&config.database_url);
    let store = admit_store::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the database {database}"))?;
    let checked = async {
        store
            .check_ready()
            .await
            .with_context(|| format!("the database {database} is not ready"))?;
        verify::check(
            store.as_ref(),
            &config.catalog,
            config.grace_period_secs,
            &request,
            SystemClock.now(),
        )
        .await
        .context("cannot read the workspace")
    }
    .await;
    store.close().await;
    let report = checked?;
    let output = if args.json {
        let mut line = verify::render_json(&report).context("cannot encode the report")?;
        line.push('\n');
        line
    } else {
        verify::render_text(&request, &report)
    };
    std::io::stdout()
        .write_all(output.as_bytes())
        .context("cannot write the report")?;
    Ok(report.verdict.exit_code())
}

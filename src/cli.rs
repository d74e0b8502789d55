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
    /// Replay events Stripe has (its events list reaches back 30 days) that
    /// admit lacks, exactly as if their webhooks had arrived. Safe to run anytime.
    Backfill {
        /// Unix seconds, an RFC 3339 time, or a duration back from now (`2d`, `12h`, `90m`).
        #[arg(long, value_parser = parse_since)]
        since: SinceArg,
    },
    /// Compare Stripe's subscriptions and customers with admit's billing state;
    /// print the drift (dry run), or repair it with --apply.
    Reconcile {
        #[arg(long)]
        apply: bool,
    },
    /// Operators' view of outgoing email: list messages, or queue one again.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Send signed, realistic Stripe event sequences to a running admit (like
    /// `stripe trigger`), with the webhook secret and address of this configuration.
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Run the decision table (S1-S18) end to end on private admits with this
    /// configuration's catalog and rules; PASS/HOLD per scenario. Exits 0 only
    /// when every scenario passes, 1 on HOLD, 2 when the gate could not run.
    QaGate(QaGateArgs),
    /// The go/no-go memo from live data: Done / In progress / Blockers,
    /// Confidence, READY or HOLD, and the decision log. Exits 0 READY, 1 HOLD.
    Readiness(ReadinessArgs),
    /// Print the OpenAPI document of `/v1` (what GET /v1/openapi.json
    /// answers, and docs/openapi.json holds). Needs no configuration.
    Openapi,
    /// The console's operators (`/admin`): add (with a role), list, remove.
    #[command(subcommand)]
    Operator(crate::operators::OperatorCommand),
}

#[derive(Debug, Args)]
struct ReadinessArgs {
    /// Print the memo as JSON (what GET /v1/readiness answers).
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<ReadinessAction>,
}

#[derive(Debug, Subcommand)]
enum ReadinessAction {
    /// Record the release decision on the current memo in the audit log.
    Approve {
        /// Who decides (the release owner).
        #[arg(long)]
        by: String,
        /// go or no-go.
        #[arg(long, value_parser = ["go", "no-go"])]
        decision: String,
        /// Why, in a sentence.
        #[arg(long)]
        note: String,
    },
}

#[derive(Debug, Args)]
struct QaGateArgs {
    /// Run one scenario (`S8`).
    #[arg(long)]
    scenario: Option<String>,
    /// Run the non-destructive subset against a running admit in Stripe test
    /// mode (its workspaces are prefixed `qa` and removed afterwards).
    #[arg(long, value_name = "URL")]
    against: Option<String>,
    /// Scenario files from this folder instead of the ones built in.
    #[arg(long, value_name = "DIR")]
    scenarios: Option<PathBuf>,
    /// The paid plan the purchases buy (default: the highest-ranked paid plan).
    #[arg(long)]
    plan: Option<String>,
    /// The Stripe price the purchases buy, e.g. the one your Checkout sells
    /// (default: the plan's first price).
    #[arg(long)]
    price: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Do not record the result in the database's audit log.
    #[arg(long)]
    no_record: bool,
}

#[derive(Debug, Args)]
struct SimulateTarget {
    /// admit's address (default: http://<ADMIT_LISTEN>).
    #[arg(long)]
    url: Option<String>,
    /// Deliver every event this many times (Stripe delivers at least once).
    #[arg(long, default_value_t = 1)]
    duplicate: u32,
    /// Deliver the events in a random order.
    #[arg(long)]
    shuffle: bool,
    /// Wait until the events are processed and print the purchaser's access.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum SimulateCommand {
    /// A paid subscription checkout for a workspace.
    Checkout {
        #[arg(long, value_parser = parse_workspace)]
        workspace: WorkspaceId,
        /// The purchaser's email.
        #[arg(long, value_parser = parse_email)]
        email: Email,
        /// A plan key of the catalog (default: the highest-ranked paid plan).
        #[arg(long)]
        plan: Option<String>,
        /// The Stripe price bought, instead of the plan's first (one the
        /// catalog lacks is held `unknown_price`).
        #[arg(long, conflicts_with = "plan")]
        price: Option<String>,
        /// Paid by someone else at the purchaser's company (billing@<their domain>),
        /// who administers nothing.
        #[arg(long)]
        mismatch: bool,
        /// A Payment Link purchase: no workspace in the metadata.
        #[arg(long)]
        unbound: bool,
        #[command(flatten)]
        target: SimulateTarget,
    },
    /// The workspace's renewal payment fails: `past_due`.
    RenewalFailed {
        #[arg(long, value_parser = parse_workspace)]
        workspace: WorkspaceId,
        #[command(flatten)]
        target: SimulateTarget,
    },
    /// The workspace's subscription is canceled (or scheduled to end).
    Cancel {
        #[arg(long, value_parser = parse_workspace)]
        workspace: WorkspaceId,
        /// Schedule the end instead of ending now.
        #[arg(long)]
        at_period_end: bool,
        #[command(flatten)]
        target: SimulateTarget,
    },
    /// A signed event that changes nothing (`admit.ping`): checks that the
    /// endpoint and the signing secret agree, e.g. after rotating it.
    Ping {
        #[command(flatten)]
        target: SimulateTarget,
    },
    /// The workspace's first payment is disputed.
    Dispute {
        #[arg(long, value_parser = parse_workspace)]
        workspace: WorkspaceId,
        #[command(flatten)]
        target: SimulateTarget,
    },
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
        Command::Verify(_) | Command::QaGate(_) | Command::Readiness(_) => {
            ExitCode::from(verify::NO_VERDICT)
        }
        Command::Serve
        | Command::Migrate
        | Command::Outbox(_)
        | Command::Operator(_)
        | Command::Openapi
        | Command::Simulate(_)
        | Command::Backfill { .. }
        | Command::Reconcile { .. } => ExitCode::FAILURE,
    };
    match execute(cli).await {
        Ok(code) => code,
        Err(error) => {
            // The whole cause chain on one line, a cause its error already
            // quotes not repeated.
            eprintln!("admit: {}", crate::telemetry::error_chain(error.as_ref()));
            failure
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Openapi = cli.command {
        use std::io::Write as _;
        std::io::stdout().write_all(crate::http::openapi::document_json().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let sources = Sources::from_process(cli.config.clone());
    let mut config = Config::load(&sources)?;
    if let Some(format) = cli.log_format {
        config.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    // The gate's private admits would log every refusal it provokes on
    // purpose; its report is its output (and the warnings below).
    let log = if matches!(cli.command, Command::QaGate(_)) {
        "error,admit::config=warn"
    } else {
        config.log.as_str()
    };
    crate::telemetry::init(config.log_format, log);
    for unknown in sources.unknown_variables() {
        tracing::warn!(target: "admit::config", variable = %unknown.name, "{unknown}");
    }
    match cli.command {
        Command::Serve => serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => migrate(config).await.map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => run_verify(config, args).await,
        Command::Outbox(command) => outbox(config, command).await.map(|()| ExitCode::SUCCESS),
        Command::Backfill { since } => backfill(config, since).await.map(|()| ExitCode::SUCCESS),
        Command::Reconcile { apply } => reconcile(config, apply).await.map(|()| ExitCode::SUCCESS),
        Command::Simulate(command) => simulate(config, command).await.map(|()| ExitCode::SUCCESS),
        Command::QaGate(args) => qa_gate(config, args).await,
        Command::Readiness(args) => readiness(config, args).await,
        // Answered before any configuration is read.
        Command::Openapi => Ok(ExitCode::SUCCESS),
        Command::Operator(command) => {
            let store = open_store(&config).await?;
            let outcome = crate::operators::run(&config, store.as_ref(), command).await;
            store.close().await;
            outcome.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// The configured store, or an error naming the database (its password
/// hidden).
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn admit_store::Store>> {
    admit_store::connect_with(&config.database_url, &config.database_options())
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                crate::config::redact_url(&config.database_url)
            )
        })
}

/// The price a simulated checkout buys: the plan's first price.
fn simulated_price(config: &Config, plan: Option<&str>) -> anyhow::Result<String> {
    crate::qa::paid_plan(config, plan).map(|(_, price)| price)
}

async fn readiness(config: Config, args: ReadinessArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&config).await?;
    let stripe = crate::stripe_sync::client(&config)?;
    let outcome = async {
        let now = SystemClock.now();
        let report =
            crate::readiness::report(&config, store.as_ref(), stripe.as_ref(), now).await?;
        let mut out = std::io::stdout().lock();
        if let Some(ReadinessAction::Approve { by, decision, note }) = args.action {
            let by = by.trim();
            let note = note.trim();
            if by.is_empty() || note.is_empty() {
                anyhow::bail!("--by and --note must say who decided and why");
            }
            let decision = admit_core::readiness::Decision::parse(&decision)
                .context("--decision must be go or no-go")?;
            crate::readiness::approve(store.as_ref(), &report, by, decision, note, now).await?;
            writeln!(
                out,
                "recorded: {} by {by} on the {} memo {} (audit action {})",
                decision.as_str(),
                report.memo.recommendation.as_str(),
                report.hash,
                crate::readiness::APPROVED_ACTION
            )?;
            if decision == admit_core::readiness::Decision::Go
                && report.memo.recommendation == admit_core::readiness::Recommendation::Hold
            {
                writeln!(out, "note: this go goes against the memo's HOLD")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&crate::readiness::render_json(&report))?
            )?;
        } else {
            out.write_all(crate::readiness::render_text(&report).as_bytes())?;
        }
        Ok(match report.memo.recommendation {
            admit_core::readiness::Recommendation::Ready => ExitCode::SUCCESS,
            admit_core::readiness::Recommendation::Hold => ExitCode::FAILURE,
        })
    }
    .await;
    store.close().await;
    outcome
}

async fn qa_gate(config: Config, args: QaGateArgs) -> anyhow::Result<ExitCode> {
    let options = crate::qa::Options {
        scenario: args.scenario,
        against: args.against,
        scenarios_dir: args.scenarios,
        plan: args.plan,
        price: args.price,
    };
    let report = crate::qa::gate(&config, &options).await?;
    let output = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&report.render_json())?)
    } else {
        report.render_text()
    };
    std::io::stdout()
        .write_all(output.as_bytes())
        .context("cannot write the report")?;
    if !args.no_record {
        // The gate's verdict is worth having even when the database is not:
        // say so and keep the exit code the verdict's.
        let recorded = async {
            let store = open_store(&config).await?;
            if config.migrate_on_start {
                store.migrate().await?;
            }
            store.check_ready().await?;
            let done = crate::qa::record(store.as_ref(), &report, SystemClock.now()).await;
            store.close().await;
            done
        }
        .await;
        if let Err(error) = recorded {
            eprintln!("admit: the result was not recorded for `admit readiness`: {error:#}");
        }
    }
    Ok(report.verdict().exit_code())
}

/// The subscription admit holds for `workspace`, from its billing state.
async fn existing_purchase(
    config: &Config,
    workspace: &WorkspaceId,
    url: Option<String>,
) -> anyhow::Result<crate::simulate::Purchase> {
    let target = crate::simulate::Target::from_config(config, url)?;
    let billing =
        crate::simulate::get(&target, &format!("/v1/workspaces/{workspace}/billing")).await?;
    crate::simulate::Purchase::existing(&billing, workspace.as_str())
}

async fn simulate(config: Config, command: SimulateCommand) -> anyhow::Result<()> {
    use crate::simulate::{Delivery, Purchase, Target, send, wait_for_access};
    let (target_args, workspace, email, events) = match command {
        SimulateCommand::Checkout {
            workspace,
            email,
            plan,
            price,
            mismatch,
            unbound,
            target,
        } => {
            let price = match price {
                Some(price) => price,
                None => simulated_price(&config, plan.as_deref())?,
            };
            let purchaser = if mismatch {
                let domain = email
                    .as_str()
                    .rsplit_once('@')
                    .map_or("example.test", |(_, d)| d);
                format!("billing@{domain}")
            } else {
                email.to_string()
            };
            let metadata = (!unbound).then(|| workspace.as_str().to_owned());
            let purchase = Purchase::new(&purchaser, metadata.as_deref(), &price);
            (target, workspace, email.to_string(), purchase.checkout())
        }
        SimulateCommand::RenewalFailed { workspace, target } => {
            let purchase = existing_purchase(&config, &workspace, target.url.clone()).await?;
            (
                target,
                workspace,
                purchase.email.clone(),
                purchase.renewal_failed(),
            )
        }
        SimulateCommand::Cancel {
            workspace,
            at_period_end,
            target,
        } => {
            let purchase = existing_purchase(&config, &workspace, target.url.clone()).await?;
            (
                target,
                workspace,
                purchase.email.clone(),
                purchase.cancel(at_period_end),
            )
        }
        SimulateCommand::Ping { target } => {
            let target_url = Target::from_config(&config, target.url.clone())?;
            let live = config.stripe.mode == crate::config::stripe::StripeMode::Live;
            let lines = send(
                &target_url,
                &[crate::simulate::ping(live)],
                Delivery {
                    copies: 1,
                    shuffle: false,
                },
            )
            .await?;
            let mut out = std::io::stdout().lock();
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            return Ok(());
        }
        SimulateCommand::Dispute { workspace, target } => {
            let purchase = existing_purchase(&config, &workspace, target.url.clone()).await?;
            (
                target,
                workspace,
                purchase.email.clone(),
                purchase.dispute(),
            )
        }
    };
    let target = Target::from_config(&config, target_args.url)?;
    let delivery = Delivery {
        copies: target_args.duplicate,
        shuffle: target_args.shuffle,
    };
    let lines = send(&target, &events, delivery).await?;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        writeln!(out, "{line}")?;
    }
    if target_args.wait {
        drop(out);
        let access = wait_for_access(&target, &events, workspace.as_str(), &email).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&access)?)?;
    }
    Ok(())
}

/// `--since` as given: resolved against the clock when the command runs.
#[derive(Debug, Clone, Copy)]
enum SinceArg {
    At(i64),
    Ago(i64),
}

fn parse_since(raw: &str) -> Result<SinceArg, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<i64>() {
        return Ok(SinceArg::At(seconds));
    }
    if let Ok(time) =
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
    {
        return Ok(SinceArg::At(time.unix_timestamp()));
    }
    let split = raw.len().saturating_sub(1);
    let (number, unit) = raw.split_at(split);
    let scale = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => {
            return Err(
                "expected unix seconds, an RFC 3339 time, or a duration like 2d, 12h, 90m".into(),
            );
        }
    };
    number
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| SinceArg::Ago(n * scale))
        .ok_or_else(|| {
            "expected unix seconds, an RFC 3339 time, or a duration like 2d, 12h, 90m".into()
        })
}

/// The store and the Stripe client an API-side command needs, and a drain of
/// the inbox afterwards so the result is visible when the command returns.
async fn stripe_command_setup(
    config: &Config,
) -> anyhow::Result<(Arc<dyn admit_store::Store>, admit_stripe::api::StripeClient)> {
    let client = crate::stripe_sync::client(config)?.ok_or_else(|| {
        anyhow::anyhow!("no Stripe API key is configured: set ADMIT_STRIPE_API_KEY")
    })?;
    let store = open_store(config).await?;
    store.check_ready().await?;
    Ok((store, client))
}

async fn drain_inbox(config: Config, store: Arc<dyn admit_store::Store>) -> anyhow::Result<usize> {
    let processor =
        crate::provision::Processor::new(store, Arc::new(config), Arc::new(SystemClock));
    Ok(processor.drain().await?)
}

async fn backfill(config: Config, since: SinceArg) -> anyhow::Result<()> {
    let (store, client) = stripe_command_setup(&config).await?;
    let now = SystemClock.now();
    let since = match since {
        SinceArg::At(seconds) => admit_core::Timestamp::from_unix(seconds),
        SinceArg::Ago(seconds) => now.plus_seconds(-seconds),
    };
    let report = crate::stripe_sync::backfill(&store, &client, since, now).await?;
    let processed = drain_inbox(config, store.clone()).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "backfill since {}: {} events fetched, {} new, {} already stored, {} unreadable; {} events processed",
        since.unix(),
        report.fetched,
        report.stored,
        report.already_had,
        report.unreadable,
        processed
    )?;
    store.close().await;
    Ok(())
}

async fn reconcile(config: Config, apply: bool) -> anyhow::Result<()> {
    let (store, client) = stripe_command_setup(&config).await?;
    let now = SystemClock.now();
    let support = config.support_email.as_ref().map(|e| e.as_str().to_owned());
    let report = crate::stripe_sync::reconcile(
        &store,
        &client,
        &config.catalog,
        support.as_deref(),
        now,
        apply,
    )
    .await?;
    crate::readiness::record_reconcile(
        store.as_ref(),
        report.drift.len() + report.duplicate_customers.len(),
        apply,
        now,
    )
    .await?;
    let processed = if apply {
        drain_inbox(config, store.clone()).await?
    } else {
        0
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} subscriptions checked; {} differences",
        report.subscriptions_checked,
        report.drift.len()
    )?;
    if !report.drift.is_empty() {
        writeln!(
            out,
            "{:<24}  {:<32}  {:<22}  {:<14}  stripe",
            "workspace", "subscription", "field", "admit"
        )?;
        for row in &report.drift {
            writeln!(
                out,
                "{:<24}  {:<32}  {:<22}  {:<14}  {}",
                row.workspace, row.subscription, row.field, row.admit, row.stripe
            )?;
        }
    }
    for (workspace, customers) in &report.duplicate_customers {
        let list: Vec<&str> = customers.iter().map(String::as_str).collect();
        writeln!(
            out,
            "workspace {workspace} has {} Stripe customers: {}",
            customers.len(),
            list.join(", ")
        )?;
    }
    if apply {
        writeln!(
            out,
            "applied: {} subscriptions recorded from Stripe, {} events processed, {} duplicate_customer cases opened",
            report.repaired, processed, report.cases_opened
        )?;
    } else if !report.drift.is_empty() || !report.duplicate_customers.is_empty() {
        writeln!(out, "dry run: nothing changed; run with --apply to repair")?;
    }
    store.close().await;
    Ok(())
}

async fn outbox(config: Config, command: OutboxCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
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
        show_development_secrets(&notice);
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

/// Where generated development secrets go when no terminal is there to show
/// them (in the working directory, readable by its owner only).
pub const DEVELOPMENT_SECRETS_FILE: &str = "admit-dev-secrets.txt";

/// Development secrets go to a person, never into a captured stream: to a
/// terminal on stderr, else to a file only the owner can read, whose path
/// (not contents) is logged. systemd and docker keep what a service writes
/// to stderr.
fn show_development_secrets(notice: &str) {
    use std::io::IsTerminal;
    let mut stderr = std::io::stderr();
    if stderr.is_terminal() {
        let _ = writeln!(stderr, "{notice}");
        return;
    }
    match write_private(std::path::Path::new(DEVELOPMENT_SECRETS_FILE), notice) {
        Ok(()) => tracing::warn!(
            file = DEVELOPMENT_SECRETS_FILE,
            "DEVELOPMENT ONLY: no webhook secret or app token is configured; the ones generated for this run are in the file (mode 0600), not in this log"
        ),
        Err(e) => tracing::warn!(
            file = DEVELOPMENT_SECRETS_FILE,
            error = %e,
            "DEVELOPMENT ONLY: no webhook secret or app token is configured, and the generated ones could not be written to the file; set ADMIT_WEBHOOK_SECRETS and ADMIT_APP_TOKEN"
        ),
    }
}

/// Writes `text` to a new file only its owner may read (replacing an old one).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{text}")
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
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
    let store = open_store(&config).await?;
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

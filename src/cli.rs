//! The `admit` command line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::SystemClock;
use crate::config::{Config, LogFormat, Sources};
use crate::startup::{App, shutdown_signal};

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
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(&Sources::from_process(cli.config.clone()))?;
    if let Some(format) = cli.log_format {
        config.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    crate::telemetry::init(config.log_format, &config.log);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(config).await,
    }
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

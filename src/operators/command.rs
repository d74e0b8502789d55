//! `admit operator add|list|remove`: the console's operators, managed on
//! the server. A password comes from standard input (never an argument,
//! which `ps` and shell history would keep); without one, a one-time setup
//! link is printed for the operator to choose theirs.

use std::io::{Read, Write};

use admit_core::{Actor, OperatorRole, SystemTask};
use admit_store::{OperatorSecret, Store, StoreError};
use anyhow::Context;
use clap::Subcommand;

use super::credentials::{
    SETUP_LINK_SECS, check_name, check_password, hash_password, hash_token, random_token,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add an operator. Reads the password from standard input with
    /// --password-stdin; otherwise prints a one-time setup link (valid 24 h).
    Add {
        /// Lower-case letters, digits, '.', '_', '-' or '@'.
        name: String,
        /// viewer (reads), support (resolves cases, replays, resends) or admin.
        #[arg(long, value_parser = parse_role)]
        role: OperatorRole,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List operators.
    List,
    /// Remove an operator and end their sessions.
    Remove { name: String },
}

fn parse_role(raw: &str) -> Result<OperatorRole, String> {
    OperatorRole::parse(raw).ok_or_else(|| "the role must be viewer, support or admin".to_owned())
}

/// Who the audit log names for the CLI's changes: the server's shell.
fn cli_actor() -> Actor {
    Actor::System(SystemTask::OperatorCli)
}

pub async fn run(
    config: &Config,
    store: &dyn Store,
    command: OperatorCommand,
) -> anyhow::Result<()> {
    store.check_ready().await?;
    let now = SystemClock.now();
    let mut out = std::io::stdout().lock();
    match command {
        OperatorCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let name = check_name(&name)?.to_owned();
            let (secret, link) = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .lock()
                    .take(4096)
                    .read_to_string(&mut password)
                    .context("cannot read the password from standard input")?;
                let password = password.trim_end_matches(['\r', '\n']);
                check_password(password)?;
                (OperatorSecret::PasswordHash(hash_password(password)?), None)
            } else {
                let token = random_token()?;
                let link = format!(
                    "{}/admin/setup?token={token}",
                    config.mail.public_url.trim_end_matches('/')
                );
                let secret = OperatorSecret::SetupToken {
                    token_hash: hash_token(&token),
                    expires_at: now.plus_seconds(SETUP_LINK_SECS),
                };
                (secret, Some(link))
            };
            match store
                .add_operator(&name, role, &secret, &cli_actor(), now)
                .await
            {
                Ok(_) => {}
                Err(StoreError::OperatorExists) => anyhow::bail!(
                    "an operator named {name:?} exists already (`admit operator remove {name}` first)"
                ),
                Err(e) => return Err(e.into()),
            }
            writeln!(out, "added operator {name} ({})", role.as_str())?;
            if let Some(link) = link {
                writeln!(
                    out,
                    "one-time setup link, valid for 24 hours; give it to {name} only:\n{link}"
                )?;
            }
        }
        OperatorCommand::List => {
            writeln!(
                out,
                "{:<32}  {:<8}  {:<9}  added",
                "name", "role", "password"
            )?;
            for o in store.operators().await? {
                writeln!(
                    out,
                    "{:<32}  {:<8}  {:<9}  {}",
                    o.name,
                    o.role.as_str(),
                    if o.password_set { "set" } else { "setup" },
                    crate::clock::format_utc(o.created_at.unix())
                )?;
            }
        }
        OperatorCommand::Remove { name } => {
            if !store.remove_operator(&name, &cli_actor(), now).await? {
                anyhow::bail!("no operator named {name:?} (`admit operator list` shows them)");
            }
            writeln!(out, "removed operator {name}; their sessions ended")?;
        }
    }
    Ok(())
}

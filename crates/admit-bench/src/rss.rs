//! admit's own memory: `admit serve` started as a process of its own (the
//! release binary beside this one), fed the lifecycles of many workspaces
//! with its processor and mail sender on, and its resident memory read from
//! `/proc` once everything is settled. The in-process runs cannot tell
//! admit's memory from the load generator's.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Args, SECRET, TOKEN, load, scrape, seed};

/// Deliveries are generated and sent in chunks of this many, so that the
/// benchmark's own memory does not grow with the run.
const CHUNK: usize = 20_000;

/// An `admit serve` child; killed if dropped while still running.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// Waits until it answers `/readyz` at `url`. Ours once it answers:
    /// another process on the port (it was free a moment ago) would leave
    /// this one exited.
    pub(crate) async fn ready(
        &mut self,
        client: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("admit serve exited before it answered: {status}");
            }
            let ready = client.get(format!("{url}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "admit serve was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (a graceful shutdown, as an orchestrator stops it), then its
    /// exit status; SIGKILL if it has not exited within `grace`.
    pub(crate) async fn terminate(
        mut self,
        grace: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        // `kill(1)`: the workspace forbids the `unsafe` a direct kill(2) needs.
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(signalled.success(), "kill -TERM {} failed", self.child.id());
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                anyhow::bail!("admit serve did not exit within {grace:?} of SIGTERM; killed");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) fn admit_binary() -> anyhow::Result<std::path::PathBuf> {
    let binary = std::env::current_exe()?.with_file_name("admit");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release -p admit -p admit-bench`",
        binary.display()
    );
    Ok(binary)
}

/// `admit` with only the settings the benchmark gives it: its database,
/// the secrets, mail written to files in `mail`, and `port` on loopback.
pub(crate) fn command(
    binary: &std::path::Path,
    database_url: &str,
    mail: &std::path::Path,
    port: u16,
) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("ADMIT_DATABASE_URL", database_url)
        .env("ADMIT_WEBHOOK_SECRETS", SECRET)
        .env("ADMIT_APP_TOKEN", TOKEN)
        .env("ADMIT_MAIL_URL", format!("file://{}", mail.display()))
        .env("ADMIT_LISTEN", format!("127.0.0.1:{port}"))
        .env("ADMIT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// `VmRSS` and `VmHWM` of a process, in MB.
fn memory_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

pub async fn run(args: &Args, events: usize, out: &mut Vec<String>) -> anyhow::Result<()> {
    let binary = admit_binary()?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let database_url = format!("sqlite://{}", dir.path().join("admit.db").display());
    let mail = dir.path().join("mail");
    let migrated = command(&binary, &database_url, &mail, port)
        .arg("migrate")
        .status()?;
    anyhow::ensure!(migrated.success(), "admit migrate failed");

    let mut server = Server {
        child: command(&binary, &database_url, &mail, port)
            .arg("serve")
            .spawn()?,
    };
    let url = format!("http://127.0.0.1:{port}");
    let client = load::client(4)?;
    server.ready(&client, &url).await?;
    let (idle, _) = memory_mb(server.child.id())?;

    let mut sent = 0;
    let mut failed = 0;
    let mut chunk = 0;
    let mut after_chunks = Vec::new();
    while sent + failed < events {
        // The workspaces are seeded beside the running server, before their events.
        let (workspaces, bodies) = crate::traffic(
            &format!("rss{chunk}x"),
            CHUNK.min(events - sent - failed),
            args,
        );
        chunk += 1;
        seed::workspaces(&dir.path().join("admit.db"), &workspaces).await?;
        let sample = load::closed_loop(
            &[&url],
            SECRET,
            Arc::new(bodies),
            16,
            Duration::from_secs(args.seconds.max(60)),
        )
        .await?;
        sent += sample.sent;
        failed += sample.failed;
        // Resident memory after each chunk: what admit keeps must not grow
        // with the events it has seen.
        after_chunks.push(memory_mb(server.child.id())?.0);
    }
    // Settled: nothing left in the inbox and no mail waiting.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = scrape::scrape(&client, &url).await?;
        let backlog = scrape::value(&text, "admit_inbox_backlog").unwrap_or(f64::NAN);
        let mail = scrape::value(&text, "admit_outbox_pending").unwrap_or(f64::NAN);
        let failed_events = scrape::value(&text, "admit_inbox_failed_events").unwrap_or(f64::NAN);
        anyhow::ensure!(
            failed_events == 0.0,
            "{failed_events} events failed: the run does not measure a healthy admit"
        );
        if backlog == 0.0 && mail == 0.0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not settled after 600 s: {backlog} events and {mail} messages waiting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rss, peak) = memory_mb(server.child.id())?;
    let failed = if failed > 0 {
        format!(" · **{failed} failed**")
    } else {
        String::new()
    };
    let chunks: Vec<String> = after_chunks.iter().map(|mb| format!("{mb:.0}")).collect();
    out.push(format!(
        "| admit serve as its own process, after {sent} deliveries processed and their mail written{failed} | RSS {rss:.0} MB (idle before: {idle:.0} MB; after each {CHUNK}: {} MB) · peak {peak:.0} MB | | target < 150 MB |",
        chunks.join(", ")
    ));
    drop(server);
    Ok(())
}

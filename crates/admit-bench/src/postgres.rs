//! admit on PostgreSQL, one instance and three on one database, beside
//! admit on SQLite, every figure against one floor measured in the same run.
//!
//! For each instance count: a fresh database on the `--postgres-url` server
//! (`CREATE DATABASE admit_bench_<random hex>`), migrated, the traffic's
//! workspaces and their owners seeded; one admit in-process (as the SQLite
//! runs have it) or three `admit serve` children (the release binary beside
//! this one); a closed-loop burst at c=16 spread round robin over them, then
//! the wait until nothing is pending; the instances stopped and the
//! database dropped. Meanwhile the database's sessions are sampled from
//! `pg_stat_activity` and, where the server runs on this machine, the CPU
//! of its processes is read from `/proc`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::rss::{self, Server};
use crate::{Args, Database, EndToEnd, Running, SECRET, cpu, floor, load, row, seed, traffic};

/// Connections each admit instance holds (`ADMIT_DATABASE_POOL_SIZE`).
pub(crate) const POOL_SIZE: u32 = 8;
/// The closed loop's concurrency (what docs/benchmarks.md compares).
const C: usize = 16;
const INSTANCE_COUNTS: [usize; 2] = [1, 3];
/// How often `pg_stat_activity` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

pub async fn run(args: &Args, server: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
    let limit = Duration::from_secs(args.seconds);
    let floor_dir = tempfile::tempdir()?;
    let floor_url = floor::start(SECRET, floor_dir.path().join("floor.log")).await?;
    let (_, bodies) = traffic("fpgx", args.events, args);
    let floor = load::closed_loop(&[&floor_url], SECRET, Arc::new(bodies), C, limit).await?;

    // SQLite's figures from the same code as the `ingest` run's.
    let (sqlite, outcomes, _) = crate::sqlite_processor_on(args, "sqx", C).await?;
    out.push(row(
        &format!("ingest, SQLite, 1 instance, c={C}"),
        &sqlite.ingest,
        Some(&floor),
    ));
    out.push(sqlite.processed_row(
        &format!("processed end to end, SQLite, 1 instance, c={C}"),
        &outcomes,
    ));
    out.push(cpu_row("SQLite, 1 instance", &sqlite, None));
    eprintln!("postgres: SQLite done");

    for instances in INSTANCE_COUNTS {
        let label = format!(
            "PostgreSQL, {instances} instance{}",
            if instances == 1 { "" } else { "s" }
        );
        let (workspaces, bodies) = traffic(&format!("pg{instances}x"), args.events, args);
        let database = create_database(server).await?;
        eprintln!("postgres: {label} on {}", database.name);
        let measured = measure(server, &database, instances, &workspaces, bodies, limit).await;
        let dropped = drop_database(server, &database.name).await;
        let measured = measured?;
        dropped?;
        out.push(row(
            &format!("ingest, {label}, c={C}"),
            &measured.run.ingest,
            Some(&floor),
        ));
        out.push(measured.run.processed_row(
            &format!("processed end to end, {label}, c={C}"),
            &measured.outcomes,
        ));
        out.push(cpu_row(&label, &measured.run, Some(&measured.server)));
        out.push(measured.sessions.row(&label));
        out.push(format!(
            "| the database's most read tables, {label}, c={C} (`pg_stat_user_tables`, from its creation to the end of the drain) | {} | | |",
            measured.tables
        ));
        if let Some(stopped) = measured.stopped {
            out.push(format!(
                "| the `admit serve` instances, {label} | {stopped} | | |"
            ));
        }
        eprintln!("postgres: {label} done");
    }
    Ok(())
}

/// A database made for one measurement.
pub(crate) struct BenchDatabase {
    pub(crate) name: String,
    pub(crate) url: String,
}

/// `CREATE DATABASE admit_bench_<16 random hex digits>` on `server`; the new
/// database's URL is the server's with its name.
pub(crate) async fn create_database(server: &str) -> anyhow::Result<BenchDatabase> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
    let name = format!(
        "admit_bench_{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .context("cannot connect to the --postgres-url server")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .context("CREATE DATABASE failed (the role needs CREATEDB)")?;
    admin.close().await?;
    let mut url = reqwest::Url::parse(server).context("--postgres-url is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(BenchDatabase {
        name,
        url: url.to_string(),
    })
}

pub(crate) async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .with_context(|| format!("cannot drop the benchmark database {name}"))?;
    admin.close().await?;
    Ok(())
}

struct Measured {
    run: EndToEnd,
    outcomes: String,
    server: ServerCpu,
    sessions: Sessions,
    /// How the `admit serve` children ended, when there were any.
    stopped: Option<String>,
    /// The tables' scans (`seed::pg_table_scans`).
    tables: String,
}

/// Migrates and seeds `database`, starts `instances` admits on it, sends
/// `bodies` at c=16 over them and waits until nothing is pending.
async fn measure(
    server: &str,
    database: &BenchDatabase,
    instances: usize,
    workspaces: &[String],
    bodies: Vec<Vec<u8>>,
    limit: Duration,
) -> anyhow::Result<Measured> {
    let store = admit_store::connect(&database.url).await?;
    store.migrate().await?;
    store.close().await;
    seed::pg_workspaces(&database.url, workspaces).await?;

    let running = Instances::start(&database.url, instances).await?;
    // The benchmark's own view of the backlog, as another client of the
    // database would have it.
    let watcher = admit_store::connect_with(
        &database.url,
        &admit_store::DatabaseOptions {
            pool_size: Some(2),
            ..Default::default()
        },
    )
    .await?;
    let sampler = Sampler::start(server, &database.name).await?;
    let before = Snapshot::take(sampler.postmaster, &running.pids());
    let run = EndToEnd::measure(&running.urls, watcher.as_ref(), bodies, C, limit).await;
    let after = Snapshot::take(sampler.postmaster, &running.pids());
    let sessions = sampler.stop().await?;
    let run = run?;
    let outcomes = seed::pg_statuses(&database.url).await?;
    watcher.close().await;
    let stopped = running.stop().await?;
    // Read once every instance's backends have exited and flushed their counters.
    let tables = seed::pg_table_scans(&database.url).await?;
    Ok(Measured {
        run,
        outcomes,
        server: after.since(&before, &database.name),
        sessions,
        stopped,
        tables,
    })
}

/// The admits of one measurement: one in-process, or `admit serve` children.
struct Instances {
    urls: Vec<String>,
    in_process: Option<Running>,
    children: Vec<Server>,
    logs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Instances {
    async fn start(database_url: &str, n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        if n == 1 {
            let admit = crate::start_admit(Database::Url(database_url), true).await?;
            return Ok(Self {
                urls: vec![admit.url.clone()],
                in_process: Some(admit),
                children: Vec::new(),
                logs: Vec::new(),
                _dir: dir,
            });
        }
        let binary = rss::admit_binary()?;
        // Ports free a moment ago, all held until now so that they differ.
        let listeners = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(listeners);
        let mut instances = Self {
            urls: Vec::new(),
            in_process: None,
            children: Vec::new(),
            logs: Vec::new(),
            _dir: dir,
        };
        for (i, port) in ports.into_iter().enumerate() {
            let folder = instances._dir.path();
            let log = folder.join(format!("admit-{}.log", i + 1));
            let mut command = rss::command(
                &binary,
                database_url,
                &folder.join(format!("mail-{}", i + 1)),
                port,
            );
            command
                .env("ADMIT_PROCESS_IN_BACKGROUND", "true")
                .env("ADMIT_DATABASE_POOL_SIZE", POOL_SIZE.to_string())
                .stderr(std::fs::File::create(&log)?)
                .arg("serve");
            instances.children.push(Server {
                child: command.spawn()?,
            });
            instances.urls.push(format!("http://127.0.0.1:{port}"));
            instances.logs.push(log);
        }
        let client = load::client(4)?;
        for (i, (server, url)) in instances
            .children
            .iter_mut()
            .zip(&instances.urls)
            .enumerate()
        {
            if let Err(error) = server.ready(&client, url).await {
                let log = std::fs::read_to_string(&instances.logs[i]).unwrap_or_default();
                anyhow::bail!("instance {}: {error:#}; its log:\n{log}", i + 1);
            }
        }
        Ok(instances)
    }

    /// The children's process ids (none for an in-process admit).
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|s| s.child.id()).collect()
    }

    /// Stops every instance: the in-process one through its shutdown
    /// signal, children with SIGTERM. For children, how they exited and
    /// what they logged (at `warn` and above), also written to stderr.
    async fn stop(self) -> anyhow::Result<Option<String>> {
        if let Some(admit) = self.in_process {
            let _ = admit.stop.send(());
            // Its pool closes with the app; the database is dropped next.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(None);
        }
        let mut statuses = Vec::new();
        let mut lines = 0;
        for (i, server) in self.children.into_iter().enumerate() {
            let status = server.terminate(Duration::from_secs(30)).await?;
            let log = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
            let logged: Vec<&str> = log.lines().collect();
            eprintln!(
                "postgres: instance {} {status} after SIGTERM; {} log lines at warn and above",
                i + 1,
                logged.len()
            );
            for line in logged.iter().take(20) {
                eprintln!("  {line}");
            }
            lines += logged.len();
            statuses.push(status.code().map_or(status.to_string(), |c| c.to_string()));
        }
        Ok(Some(format!(
            "exit codes after SIGTERM: {}; {lines} log lines at warn and above",
            statuses.join(", ")
        )))
    }
}

/// CPU seconds of the PostgreSQL server's processes and of the `admit
/// serve` children, at one moment.
struct Snapshot {
    server: HashMap<u32, (f64, String)>,
    children: f64,
    local: bool,
}

impl Snapshot {
    fn take(postmaster: Option<u32>, children: &[u32]) -> Self {
        Self {
            server: postmaster.map(cpu::server_processes).unwrap_or_default(),
            children: children
                .iter()
                .map(|&pid| cpu::process_seconds(pid).unwrap_or(f64::NAN))
                .sum(),
            local: postmaster.is_some(),
        }
    }

    /// What was used since `start`; a process that started in between
    /// counts from zero.
    fn since(&self, start: &Self, database: &str) -> ServerCpu {
        let mut used = ServerCpu {
            server: 0.0,
            backends: 0.0,
            children: self.children - start.children,
        };
        if !self.local {
            used.server = f64::NAN;
            used.backends = f64::NAN;
        }
        let name = format!(" {database} ");
        for (pid, (seconds, title)) in &self.server {
            let delta = seconds - start.server.get(pid).map_or(0.0, |(s, _)| *s);
            used.server += delta;
            if title.contains(&name) {
                used.backends += delta;
            }
        }
        used
    }
}

/// CPU seconds over the burst and the drain.
struct ServerCpu {
    /// The postmaster and all its children (every database on the server,
    /// the WAL writer, the checkpointer, …); NaN if it is not on this machine.
    server: f64,
    /// The backends of the benchmark's database.
    backends: f64,
    /// The `admit serve` children (0 when admit runs in-process).
    children: f64,
}

fn cpu_row(label: &str, run: &EndToEnd, server: Option<&ServerCpu>) -> String {
    let wall = (run.ingest.elapsed + run.drain).as_secs_f64();
    let cpu = &run.cpu;
    let mut parts = vec![format!(
        "machine busy {:.1} s ({:.0}%)",
        cpu.busy,
        100.0 * cpu.busy / cpu.all
    )];
    match server {
        Some(used) if used.server.is_nan() => {
            parts.push("PostgreSQL server not on this machine".to_owned());
        }
        Some(used) => parts.push(format!(
            "PostgreSQL server {:.1} s (the benchmark database's backends {:.1} s)",
            used.server, used.backends
        )),
        None => {}
    }
    match server {
        Some(used) if used.children > 0.0 => {
            parts.push(format!("`admit serve` children {:.1} s", used.children));
            parts.push(format!(
                "benchmark process {:.1} s (load generator, idle floor)",
                cpu.own
            ));
        }
        _ => parts.push(format!(
            "benchmark process {:.1} s (admit in-process, load generator, idle floor)",
            cpu.own
        )),
    }
    format!(
        "| CPU during ingest + drain, {label}, c={C} ({wall:.1} s × {:.0} cores = {:.1} s) | {} | | |",
        cpu.all / wall,
        cpu.all,
        parts.join(" · ")
    )
}

/// Samples the sessions of one database in `pg_stat_activity` until stopped.
struct Sampler {
    /// The server's postmaster, when it runs on this machine.
    postmaster: Option<u32>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<Sessions>>,
}

impl Sampler {
    async fn start(server: &str, database: &str) -> anyhow::Result<Self> {
        let mut conn = sqlx::PgConnection::connect(server).await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        // The server is on this machine if this connection's backend is a
        // local `postgres:` process; its parent is then the postmaster.
        let postmaster = u32::try_from(backend).ok().and_then(|pid| {
            let title = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            title
                .starts_with(b"postgres: ")
                .then(|| cpu::parent(pid))
                .flatten()
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let database = database.to_owned();
        let task = tokio::spawn(async move {
            let mut sessions = Sessions::default();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
                let rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT COALESCE(state, ''),
                            COALESCE(wait_event_type || ':' || wait_event, ''),
                            COUNT(*)
                     FROM pg_stat_activity
                     WHERE datname = $1 AND state IS DISTINCT FROM 'idle'
                     GROUP BY 1, 2",
                )
                .bind(&database)
                .fetch_all(&mut conn)
                .await?;
                sessions.samples += 1;
                for (state, wait, n) in rows {
                    let label = match (state.as_str(), wait.is_empty()) {
                        ("active", true) => "active, no wait event (running)".to_owned(),
                        ("", _) => "starting (no state yet)".to_owned(),
                        (state, true) => state.to_owned(),
                        (state, false) => format!("{state}, {wait}"),
                    };
                    *sessions.counts.entry(label).or_default() += n;
                }
            }
            conn.close().await?;
            Ok(sessions)
        });
        Ok(Self {
            postmaster,
            stop,
            task,
        })
    }

    async fn stop(self) -> anyhow::Result<Sessions> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Sessions of the database that were not idle, by state and wait event,
/// summed over the samples.
#[derive(Debug, Default)]
struct Sessions {
    samples: u64,
    counts: HashMap<String, i64>,
}

impl Sessions {
    fn row(&self, label: &str) -> String {
        let mut counts: Vec<(&String, &i64)> = self.counts.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let samples = self.samples.max(1) as f64;
        let busy: i64 = self.counts.values().sum();
        let listed: Vec<String> = counts
            .iter()
            .take(8)
            .map(|(what, n)| format!("{:.2} {what}", **n as f64 / samples))
            .collect();
        format!(
            "| the database's sessions that were not idle, {label}, c={C} (mean over {} samples of `pg_stat_activity`, one every {} ms, during ingest + drain) | {:.2} in all: {} | | |",
            self.samples,
            SAMPLE_EVERY.as_millis(),
            busy as f64 / samples,
            listed.join(" · ")
        )
    }
}

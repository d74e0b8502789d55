//! `admit-bench`: admit under signed, realistic Stripe traffic, with the
//! durable-ingest floor (verify + append + fdatasync, syncs merged) measured
//! in the same invocation, so every figure is read as a ratio to what this
//! machine's disk allows right now. See docs/benchmarks.md.

mod console;
mod cpu;
mod floor;
mod history;
mod load;
mod postgres;
mod rss;
mod scrape;
mod seed;
mod stripe_bodies;
mod traffic;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use admit::config::Sources;
use admit::{App, Config, SystemClock};
use clap::{Parser, ValueEnum};
use load::Sample;

/// The runs `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Run {
    /// Closed-loop ingest at each concurrency, against the floor.
    Ingest,
    /// Receipt → access of probe purchases under open-loop load, admit's
    /// own view of it from /metrics, then access checks.
    Probe,
    /// A renewal after years of renewals against a fresh purchase's first.
    History,
    /// `admit serve` as its own process: its memory after many events.
    Rss,
    /// Ingest and end to end at c=16 on PostgreSQL (`--postgres-url`), one
    /// admit and three on one database, beside SQLite's, against one floor.
    Postgres,
    /// The operator console's pages over `--console-events` stored events
    /// (SQLite, and PostgreSQL too with `--postgres-url`), against `/healthz`.
    Console,
}

#[derive(Debug, Parser)]
#[command(
    name = "admit-bench",
    about = "admit's throughput against the durable-ingest floor"
)]
struct Args {
    /// Closed-loop concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Seconds each closed-loop run lasts at most.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events generated for each closed-loop run (it stops at whichever comes first).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Open-loop background rate (events/s) while probe purchases are timed.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of background load around the probes.
    #[arg(long, default_value_t = 15)]
    probe_seconds: u64,
    /// Workspaces in the database while access checks run.
    #[arg(long, default_value_t = 100_000)]
    workspaces: usize,
    /// Share of deliveries sent twice.
    #[arg(long, default_value_t = 0.05)]
    redeliver: f64,
    /// Share of lifecycles delivered shuffled.
    #[arg(long, default_value_t = 0.1)]
    out_of_order: f64,
    /// Subscriptions with a long history, and fresh purchases per round.
    #[arg(long, default_value_t = 200)]
    history_subscriptions: usize,
    /// Monthly renewals each long history has before the timed one.
    #[arg(long, default_value_t = 36)]
    history_months: u32,
    /// Timed rounds (fresh, then history, each round).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    history_rounds: u32,
    /// The events' bodies: as Stripe sends them, or the compact ones of
    /// `admit simulate` (the history run always uses those).
    #[arg(long, value_enum, default_value_t = traffic::Bodies::Stripe)]
    bodies: traffic::Bodies,
    /// Deliveries the `rss` run sends to `admit serve`.
    #[arg(long, default_value_t = 100_000)]
    rss_events: usize,
    /// Stored events the `console` run seeds each database with.
    #[arg(long, default_value_t = 100_000)]
    console_events: usize,
    /// Only these runs (all when not given; `postgres` only with `--postgres-url`).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Run>,
    /// A PostgreSQL server for the `postgres` and `console` runs, as a URL whose role may
    /// CREATE DATABASE: each run's admit gets a fresh database there,
    /// dropped at the end.
    #[arg(long, value_name = "URL")]
    postgres_url: Option<String>,
}

impl Args {
    fn runs(&self, run: Run) -> bool {
        if run == Run::Postgres && self.postgres_url.is_none() {
            return false;
        }
        self.only.is_empty() || self.only.contains(&run)
    }
}

const SECRET: &str = "whsec_bench_0123456789abcdef";
const TOKEN: &str = "bench-app-token-0123456789abcdef";

struct Running {
    url: String,
    store: Arc<dyn admit_store::Store>,
    /// The app's own processor, for runs that step it instead of letting it
    /// run in the background.
    processor: admit::provision::Processor,
    /// The app's own outbox sender, likewise.
    sender: admit::mail::sender::Sender,
    /// Its mail and, for [`Database::FreshSqlite`], its database.
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// The database an in-process admit runs on.
#[derive(Debug, Clone, Copy)]
enum Database<'a> {
    /// A new SQLite file, `admit.db` in the admit's own folder, with these
    /// workspaces seeded into it.
    FreshSqlite { workspaces: &'a [String] },
    /// The database this URL names, already migrated and seeded
    /// (PostgreSQL; the pool holds as many connections as a spawned
    /// instance's, [`postgres::POOL_SIZE`]).
    Url(&'a str),
}

async fn start_admit(database: Database<'_>, processor: bool) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("admit.db");
    let mut env: Vec<(String, String)> = [
        (
            "ADMIT_DATABASE_URL",
            match database {
                Database::FreshSqlite { .. } => format!("sqlite://{}", db.display()),
                Database::Url(url) => url.to_owned(),
            },
        ),
        ("ADMIT_WEBHOOK_SECRETS", SECRET.to_owned()),
        ("ADMIT_APP_TOKEN", TOKEN.to_owned()),
        (
            "ADMIT_MAIL_URL",
            format!("file://{}", dir.path().join("mail").display()),
        ),
        ("ADMIT_PROCESS_IN_BACKGROUND", processor.to_string()),
        ("ADMIT_LISTEN", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Database::Url(_) = database {
        env.push((
            "ADMIT_DATABASE_POOL_SIZE".to_owned(),
            postgres::POOL_SIZE.to_string(),
        ));
    }
    let config = Config::load(&Sources { file: None, env })?;
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let store = app.state().store.clone();
    let processor = app.processor();
    let sender = app.sender();
    if let Database::FreshSqlite { workspaces } = database {
        seed::workspaces(&db, workspaces).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        url,
        store,
        processor,
        sender,
        _dir: dir,
        stop,
    })
}

/// Workspaces whose lifecycles are interleaved: Stripe sends the events of
/// many purchases at once, not one purchase after another.
const INTERLEAVE: usize = 200;

/// Every body `traffic` generated, for the mean in the header.
static GENERATED_BYTES: AtomicU64 = AtomicU64::new(0);
static GENERATED_BODIES: AtomicU64 = AtomicU64::new(0);

/// At least `events` bodies of workspaces' lifecycles, and the workspaces.
/// Within each window of `INTERLEAVE` workspaces the lifecycles take turns
/// (each keeps its own order), so consecutive deliveries rarely share a purchase.
fn traffic(prefix: &str, events: usize, args: &Args) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut rng = traffic::Rng::new();
    let mut workspaces = Vec::new();
    let mut bodies = Vec::new();
    let mut n = 0;
    while bodies.len() < events {
        let mut window: Vec<std::collections::VecDeque<Vec<u8>>> = Vec::new();
        for _ in 0..INTERLEAVE {
            let workspace = format!("ws_{prefix}{n:07}");
            n += 1;
            window.push(
                traffic::lifecycle(
                    &workspace,
                    args.bodies,
                    &mut rng,
                    args.out_of_order,
                    args.redeliver,
                )
                .into_iter()
                .map(|e| e.body)
                .collect(),
            );
            workspaces.push(workspace);
        }
        while window.iter().any(|l| !l.is_empty()) {
            for lifecycle in &mut window {
                if let Some(body) = lifecycle.pop_front() {
                    bodies.push(body);
                }
            }
        }
    }
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    GENERATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    GENERATED_BODIES.fetch_add(bodies.len() as u64, Ordering::Relaxed);
    (workspaces, bodies)
}

fn row(what: &str, admit: &Sample, floor: Option<&Sample>) -> String {
    let ratio = floor.map_or("".to_owned(), |f| {
        format!("{:.2}×", admit.rate() / f.rate())
    });
    let failed = if admit.failed > 0 {
        format!(" · **{} failed**", admit.failed)
    } else {
        String::new()
    };
    format!(
        "| {what} | {:.0} ev/s · p50 {:.1} ms · p99 {:.1} ms{failed} | {} | {ratio} |",
        admit.rate(),
        admit.percentile(50.0),
        admit.percentile(99.0),
        floor.map_or("".to_owned(), |f| format!(
            "{:.0} ev/s · p50 {:.1} ms · p99 {:.1} ms",
            f.rate(),
            f.percentile(50.0),
            f.percentile(99.0)
        )),
    )
}

async fn drained(store: &dyn admit_store::Store, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while store.pending_events().await? > 0 {
        if start.elapsed() > limit {
            anyhow::bail!("the backlog did not drain within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

/// The process's peak resident memory (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn bytes_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("admit.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.only.contains(&Run::Postgres) && args.postgres_url.is_none() {
        anyhow::bail!(
            "`--only postgres` needs `--postgres-url postgres://…` (a role that may CREATE DATABASE)"
        );
    }
    // The header's first line, with the mean body, is written once the
    // traffic has been generated.
    let mut out = vec![String::new(), String::new()];
    out.push("| run | admit | floor (verify + append + fdatasync) | admit / floor |".to_owned());
    out.push("|---|---|---|---|".to_owned());

    if args.runs(Run::Ingest) {
        ingest(&args, &mut out).await?;
    }
    if args.runs(Run::Probe) {
        probe(&args, &mut out).await?;
    }
    if args.runs(Run::History) {
        history::run(
            history::Options {
                subscriptions: args.history_subscriptions,
                months: args.history_months,
                rounds: args.history_rounds,
            },
            &mut out,
        )
        .await?;
    }
    if args.runs(Run::Rss) {
        rss::run(&args, args.rss_events, &mut out).await?;
    }
    if let (true, Some(server)) = (args.runs(Run::Postgres), &args.postgres_url) {
        postgres::run(&args, server, &mut out).await?;
    }
    if args.runs(Run::Console) {
        console::run(args.console_events, args.postgres_url.as_deref(), &mut out).await?;
    }
    out.push(format!(
        "| peak RSS of the whole benchmark process (every admit it ran in-process, the floor, the load generator, the ids) | {:.0} MB | | |",
        peak_rss_mb()
    ));
    let (bytes, bodies) = (
        GENERATED_BYTES.load(Ordering::Relaxed),
        GENERATED_BODIES.load(Ordering::Relaxed),
    );
    out[0] = format!(
        "admit-bench: {} events per run, ≤ {} s each, {} bodies ({}), {:.0}% re-deliveries, {:.0}% lifecycles out of order; {} cores",
        args.events,
        args.seconds,
        args.bodies
            .to_possible_value()
            .map_or("?".to_owned(), |v| v.get_name().to_owned()),
        if bodies == 0 {
            "none generated".to_owned()
        } else {
            format!("mean {:.0} B", bytes as f64 / bodies as f64)
        },
        args.redeliver * 100.0,
        args.out_of_order * 100.0,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut stdout = std::io::stdout().lock();
    for line in out {
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

/// Closed-loop ingest at each concurrency, each next to the floor.
async fn ingest(args: &Args, out: &mut Vec<String>) -> anyhow::Result<()> {
    let limit = Duration::from_secs(args.seconds);
    let floor_dir = tempfile::tempdir()?;
    let floor_url = floor::start(SECRET, floor_dir.path().join("floor.log")).await?;

    for &c in &args.concurrency {
        // The floor and admit take the same traffic, minutes apart at most.
        let (_, bodies) = traffic(&format!("f{c}x"), args.events, args);
        let floor = load::closed_loop(&[&floor_url], SECRET, Arc::new(bodies), c, limit).await?;

        let (run, outcomes, sizes) = sqlite_processor_on(args, &format!("p{c}x"), c).await?;
        out.push(row(
            &format!("ingest, processor on, c={c}"),
            &run.ingest,
            Some(&floor),
        ));
        out.push(run.processed_row(&format!("processed end to end, c={c}"), &outcomes));
        out.push(format!(
            "| database growth per event, c={c} (WAL checkpointed) | {:.0} B ({:.2}× the raw bodies stored) | | |",
            sizes.growth as f64 / run.stored.max(1) as f64,
            sizes.growth as f64 / sizes.raw.max(1) as f64
        ));
        if let Some(inbox) = sizes.inbox {
            out.push(format!(
                "| inbox per event, c={c} (events, their bodies and their indexes) | {:.0} B ({:.2}× the raw bodies stored) | | |",
                inbox as f64 / run.stored.max(1) as f64,
                inbox as f64 / sizes.raw.max(1) as f64
            ));
        }

        let (workspaces, bodies) = traffic(&format!("i{c}x"), args.events, args);
        let ingest_only = start_admit(
            Database::FreshSqlite {
                workspaces: &workspaces,
            },
            false,
        )
        .await?;
        let sample =
            load::closed_loop(&[&ingest_only.url], SECRET, Arc::new(bodies), c, limit).await?;
        out.push(row(
            &format!("ingest only (processor off), c={c}"),
            &sample,
            Some(&floor),
        ));
        let _ = ingest_only.stop.send(());
        eprintln!("c={c} done");
    }

    Ok(())
}

/// One closed-loop burst against an admit with its processor on: its
/// ingest, the new events it stored, and how long its backlog took to drain
/// after the last answer.
struct EndToEnd {
    ingest: Sample,
    stored: u64,
    drain: Duration,
    /// This process's and the machine's CPU over the burst and the drain.
    cpu: cpu::Machine,
}

impl EndToEnd {
    /// Sends `bodies` at concurrency `c` over `urls` (round robin), then
    /// waits until `store` (the admit's database) holds nothing pending.
    async fn measure(
        urls: &[impl AsRef<str>],
        store: &dyn admit_store::Store,
        bodies: Vec<Vec<u8>>,
        c: usize,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let before = store.count_events().await?;
        let start = cpu::Machine::now();
        let ingest = load::closed_loop(urls, SECRET, Arc::new(bodies), c, limit).await?;
        let drain = drained(store, Duration::from_secs(600)).await?;
        let cpu = cpu::Machine::now().since(&start);
        let stored = store.count_events().await? - before;
        Ok(Self {
            ingest,
            stored,
            drain,
            cpu,
        })
    }

    /// Events stored per second, from the first delivery to an empty backlog.
    fn processed(&self) -> f64 {
        self.stored as f64 / (self.ingest.elapsed + self.drain).as_secs_f64()
    }

    /// The `processed end to end` row; `outcomes` are the stored events by
    /// status (`seed::statuses`).
    fn processed_row(&self, what: &str, outcomes: &str) -> String {
        format!(
            "| {what} | {:.0} ev/s ({} events: {outcomes}; backlog drained {:.1} s after the last 2xx) | | |",
            self.processed(),
            self.stored,
            self.drain.as_secs_f64()
        )
    }
}

/// The SQLite database of a stopped admit, its WAL checkpointed.
struct Sizes {
    /// Growth over the seeded workspaces, in bytes.
    growth: u64,
    /// The raw bodies stored.
    raw: u64,
    /// The inbox's own pages, where SQLite has `dbstat`.
    inbox: Option<u64>,
}

/// admit in-process on a fresh SQLite database (the traffic's workspaces
/// seeded), processor on: a closed-loop burst at `c` and its drain, the
/// stored events by status, and the database's size once admit has stopped.
async fn sqlite_processor_on(
    args: &Args,
    prefix: &str,
    c: usize,
) -> anyhow::Result<(EndToEnd, String, Sizes)> {
    let (workspaces, bodies) = traffic(prefix, args.events, args);
    let admit = start_admit(
        Database::FreshSqlite {
            workspaces: &workspaces,
        },
        true,
    )
    .await?;
    let dir = admit._dir.path();
    let seeded = seed::checkpointed_bytes(dir).await?;
    let run = EndToEnd::measure(
        &[&admit.url],
        admit.store.as_ref(),
        bodies,
        c,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let outcomes = seed::statuses(dir).await?;
    let _ = admit.stop.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sizes = Sizes {
        growth: seed::checkpointed_bytes(dir).await?.saturating_sub(seeded),
        raw: seed::payload_bytes(dir).await?,
        inbox: seed::inbox_bytes(dir).await?,
    };
    Ok((run, outcomes, sizes))
}

/// Receipt → access of probe purchases under open-loop background load, and
/// admit's own account of it; then access checks over every workspace.
async fn probe(args: &Args, out: &mut Vec<String>) -> anyhow::Result<()> {
    let limit = Duration::from_secs(args.seconds);
    // Receipt → access of probe purchases under open-loop background load.
    let (mut workspaces, background) = traffic(
        "bg",
        (args.rate as usize) * (args.probe_seconds as usize) + 1,
        args,
    );
    let probes: Vec<String> = (0..(args.probe_seconds * 4))
        .map(|n| format!("ws_probe{n:05}"))
        .collect();
    workspaces.extend(probes.iter().cloned());
    let mut filler: Vec<String> = (0..args.workspaces.saturating_sub(workspaces.len()))
        .map(|n| format!("ws_fill{n:07}"))
        .collect();
    workspaces.append(&mut filler);
    let admit = start_admit(
        Database::FreshSqlite {
            workspaces: &workspaces,
        },
        true,
    )
    .await?;
    let url = admit.url.clone();
    // What an operator would see of the same run: admit's own gauges,
    // scraped as Prometheus would, until the backlog has drained.
    let (stop_watching, watching) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(scrape::watch_backlog(
        url.clone(),
        Duration::from_millis(500),
        watching,
    ));
    let load = tokio::spawn({
        let url = url.clone();
        let rate = args.rate;
        let seconds = args.probe_seconds;
        async move {
            load::open_loop(
                &url,
                SECRET,
                Arc::new(background),
                rate,
                Duration::from_secs(seconds),
            )
            .await
        }
    });
    let client = load::client(4)?;
    let mut probe_ms = Vec::new();
    let mut rng = traffic::Rng::new();
    for workspace in &probes {
        for event in traffic::checkout(workspace, args.bodies, &mut rng) {
            load::post(&client, &url, SECRET, &event.body).await;
        }
        let answered = Instant::now();
        let access = format!(
            "{url}/v1/access?workspace_id={workspace}&email={}",
            traffic::owner(workspace)
        );
        loop {
            let body: serde_json::Value = client
                .get(&access)
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?;
            if body["plan"] == "pro" {
                probe_ms.push(answered.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if answered.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("probe {workspace} was not provisioned within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let background = load.await??;
    probe_ms.sort_by(f64::total_cmp);
    let probes_sample = Sample {
        sent: probe_ms.len(),
        failed: 0,
        elapsed: Duration::from_secs(1),
        latencies: probe_ms,
    };
    out.push(format!(
        "| receipt → access, {} probes under {:.0} ev/s background ({:.0} ev/s achieved) | p50 {:.1} ms · p99 {:.1} ms | | |",
        probes_sample.sent,
        args.rate,
        background.rate(),
        probes_sample.percentile(50.0),
        probes_sample.percentile(99.0)
    ));
    drained(admit.store.as_ref(), Duration::from_secs(600)).await?;
    let _ = stop_watching.send(());
    let peak = watcher.await??;
    let text = scrape::scrape(&client, &url).await?;
    let lag = scrape::buckets(&text, "admit_event_processing_lag_seconds");
    let ms = |q: f64| {
        scrape::quantile(&lag, q).map_or("n/a".to_owned(), |s| format!("{:.1} ms", s * 1e3))
    };
    out.push(format!(
        "| admit's own receipt → outcome, every step of the same run (`/metrics` histogram, {:.0} observations; backlog gauges from {} scrapes every 500 ms{}) | p50 ≈ {} · p99 ≈ {} · backlog max {:.0} events · oldest unprocessed max {:.0} s | | |",
        scrape::value(&text, "admit_event_processing_lag_seconds_count").unwrap_or(0.0),
        peak.scrapes,
        if peak.failed > 0 {
            format!(", **{} failed**", peak.failed)
        } else {
            String::new()
        },
        ms(0.5),
        ms(0.99),
        peak.backlog,
        peak.oldest_unprocessed_age,
    ));

    // Access checks at c=64 over every workspace in the database, then the
    // same requests against the floor's answer from memory.
    let access = access_checks(&url, &workspaces, 64, limit).await?;
    let floor_dir = tempfile::tempdir()?;
    let floor_url = floor::start(SECRET, floor_dir.path().join("floor.log")).await?;
    let floor = access_checks(&floor_url, &workspaces, 64, limit).await?;
    out.push(format!(
        "| access check, c=64, {} workspaces | {:.0} req/s · p50 {:.2} ms · p99 {:.2} ms | {:.0} req/s · p50 {:.2} ms · p99 {:.2} ms (a fixed answer from memory) | {:.2}× |",
        workspaces.len(),
        access.rate(),
        access.percentile(50.0),
        access.percentile(99.0),
        floor.rate(),
        floor.percentile(50.0),
        floor.percentile(99.0),
        access.rate() / floor.rate().max(1e-9)
    ));
    let _ = admit.stop.send(());
    Ok(())
}

async fn access_checks(
    url: &str,
    workspaces: &[String],
    concurrency: usize,
    limit: Duration,
) -> anyhow::Result<Sample> {
    let client = load::client(concurrency)?;
    let workspaces = Arc::new(workspaces.to_vec());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, workspaces) = (client.clone(), workspaces.clone());
        let url = url.to_owned();
        workers.push(tokio::spawn(async move {
            let mut rng = traffic::Rng::new();
            let mut sample = Sample::default();
            while start.elapsed() < limit {
                let workspace = &workspaces[rng.below(workspaces.len())];
                let sent = Instant::now();
                let ok = client
                    .get(format!(
                        "{url}/v1/access?workspace_id={workspace}&email={}",
                        traffic::owner(workspace)
                    ))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    sample.sent += 1;
                    sample.latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                } else {
                    sample.failed += 1;
                }
            }
            sample
        }));
    }
    let mut all = Sample::default();
    for worker in workers {
        let part = worker.await?;
        all.sent += part.sent;
        all.failed += part.failed;
        all.latencies.extend(part.latencies);
    }
    all.elapsed = start.elapsed();
    all.latencies.sort_by(f64::total_cmp);
    Ok(all)
}

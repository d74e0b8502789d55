//! The operator console over a database the size of a year and more of a
//! busy shop: each page's latency with 100,000 stored events, next to
//! `/healthz` (the HTTP round trip and nothing else) timed the same way in
//! the same run, against the console's target of 100 ms a page.
//!
//! Seeding is not timed. About 5,000 workspaces (the owner and up to three
//! more members each) are written straight into the database; their
//! purchases' events (Stripe's bodies, `stripe_bodies`) go through the
//! store's `insert_events` in the order Stripe sent them, stamped as received
//! then; the app's own processor settles each batch and its sender sends
//! the mail meanwhile, so the inbox, the derived rows, the cases and the
//! outbox are the ones admit writes. Each purchase renewed monthly for up to 14 months; some renewals
//! failed, some subscriptions are set to cancel, and a few purchases name a
//! workspace that does not exist (held, `missing_workspace`).
//!
//! Then an operator is added through the store, signs in over HTTP as a
//! browser does (the sign-in form's double-submit token, then the session
//! cookie), and every page is requested one after another (c=1).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use admit_core::{Actor, OperatorRole, SystemTask, Timestamp};
use admit_store::{CaseQuery, EventQuery, EventSource, NewEvent, OperatorSecret, OutboxQuery};
use anyhow::Context as _;
use reqwest::header::{COOKIE, SET_COOKIE};
use sqlx::Connection as _;

use crate::load::Sample;
use crate::seed::{self, Workspace};
use crate::stripe_bodies::Purchase;
use crate::traffic::{self, Rng};
use crate::{Database, Running, SECRET, postgres};

const DAY: i64 = 86_400;
const MONTH: i64 = 30 * DAY;
/// Monthly renewals a purchase has had, on average (drawn evenly from
/// 0 to twice this): about 20 events a workspace, so 100,000 events come
/// from about 5,000 workspaces.
const MEAN_MONTHS: usize = 7;
/// Purchases naming a workspace that does not exist: held as `missing_workspace`.
const UNBOUND: f64 = 0.02;
/// Purchases whose latest renewal failed…
const FAILED_RENEWAL: f64 = 0.3;
/// …and subscriptions set to cancel at the end of their month.
const CANCELLED: f64 = 0.2;
/// Events stored in one transaction before the processor settles them, as
/// a burst of webhooks would be.
const BATCH: usize = 1_000;
/// Requests per page.
const SAMPLES: usize = 50;
/// A console page must answer within this.
const TARGET_MS: f64 = 100.0;
/// Next-page links followed from the first page of the events list to the
/// deep page.
const DEEP: usize = 20;
/// Timings of the readiness facts query, read straight from the store.
const FACTS_SAMPLES: usize = 10;
const OPERATOR: &str = "bench-support";
const PASSWORD: &str = "console-bench-password-0123";
const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

pub async fn run(
    events: usize,
    postgres_url: Option<&str>,
    out: &mut Vec<String>,
) -> anyhow::Result<()> {
    let now = admit::Clock::now(&admit::SystemClock).unix();
    let plan = Plan::new(events, now);
    eprintln!(
        "console: {} events planned over {} purchases, {} workspaces",
        plan.events,
        plan.purchases.len(),
        plan.workspaces.len()
    );

    // An admit dropped on an error stops with it: its shutdown signal's
    // sender goes.
    let admit = crate::start_admit(Database::FreshSqlite { workspaces: &[] }, false).await?;
    let db = admit._dir.path().join("admit.db");
    seed::directory(&db, &plan.workspaces).await?;
    let measured = measure(&admit, &plan, Dialect::Sqlite).await?;
    out.extend(measured.rows(
        "SQLite",
        &seed::statuses(admit._dir.path()).await?,
        &sqlite_counts(&db).await?,
    ));
    let _ = admit.stop.send(());
    eprintln!("console: SQLite done");

    if let Some(server) = postgres_url {
        let database = postgres::create_database(server).await?;
        eprintln!("console: PostgreSQL on {}", database.name);
        let measured = on_postgres(&database.url, &plan).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let dropped = postgres::drop_database(server, &database.name).await;
        let rows = measured?;
        dropped?;
        out.extend(rows);
        eprintln!("console: PostgreSQL done");
    }
    Ok(())
}

async fn on_postgres(url: &str, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let store = admit_store::connect(url).await?;
    store.migrate().await?;
    store.close().await;
    seed::pg_directory(url, &plan.workspaces).await?;
    let admit = crate::start_admit(Database::Url(url), false).await?;
    let measured = measure(&admit, plan, Dialect::Postgres(url)).await?;
    let rows = measured.rows(
        "PostgreSQL",
        &seed::pg_statuses(url).await?,
        &pg_counts(url).await?,
    );
    let _ = admit.stop.send(());
    Ok(rows)
}

#[derive(Clone, Copy)]
enum Dialect<'a> {
    Sqlite,
    /// The database's URL (it may hold a password: never printed).
    Postgres(&'a str),
}

impl std::fmt::Display for Dialect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres(_) => "PostgreSQL",
        })
    }
}

/// The purchases, and their events' groups in the order Stripe sends them.
struct Plan {
    /// The workspaces that exist (not those of unbound purchases).
    workspaces: Vec<Workspace>,
    purchases: Vec<Planned>,
    groups: Vec<Group>,
    events: usize,
}

struct Planned {
    purchase: Purchase,
    workspace: String,
    months: u32,
    bound: bool,
}

/// Events Stripe sends together for one purchase.
#[derive(Debug, Clone, Copy)]
struct Group {
    at: i64,
    purchase: usize,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Checkout,
    /// The n-th monthly renewal, paid.
    Renewal(u32),
    /// The n-th monthly renewal, failed: `past_due`.
    RenewalFailed(u32),
    /// Set to cancel during the n-th month.
    Cancellation(u32),
}

impl Kind {
    fn events(self) -> usize {
        match self {
            Kind::Checkout => 4,
            Kind::Renewal(_) | Kind::RenewalFailed(_) => 2,
            Kind::Cancellation(_) => 1,
        }
    }
}

impl Plan {
    /// Purchases until they make at least `events` events. Every purchase's
    /// current month began 1 to 29 days before `now`, so the subscriptions
    /// that were paid are still running.
    fn new(events: usize, now: i64) -> Self {
        let mut rng = Rng::new();
        let mut plan = Plan {
            workspaces: Vec::new(),
            purchases: Vec::new(),
            groups: Vec::new(),
            events: 0,
        };
        while plan.events < events {
            let i = plan.purchases.len();
            let workspace = format!("ws_console{i:06}");
            let unbound = rng.chance(UNBOUND);
            let months = if unbound {
                0
            } else {
                rng.below(2 * MEAN_MONTHS + 1) as u32
            };
            let current = now - DAY - rng.below(28 * DAY as usize) as i64;
            let start = current - i64::from(months) * MONTH;
            let mut groups = vec![(start, Kind::Checkout)];
            for month in 1..=months {
                let kind = if month == months && rng.chance(FAILED_RENEWAL) {
                    Kind::RenewalFailed(month)
                } else {
                    Kind::Renewal(month)
                };
                groups.push((start + i64::from(month) * MONTH, kind));
            }
            if !unbound && rng.chance(CANCELLED) {
                let at = current + 60 + rng.below((now - current - 120) as usize) as i64;
                groups.push((at, Kind::Cancellation(months)));
            }
            for (at, kind) in groups {
                plan.events += kind.events();
                plan.groups.push(Group {
                    at,
                    purchase: i,
                    kind,
                });
            }
            if !unbound {
                let mut members = vec![(traffic::owner(&workspace), "owner")];
                for n in 0..rng.below(4) {
                    let role = if n == 0 { "admin" } else { "member" };
                    members.push((format!("member{n}@{workspace}.test"), role));
                }
                plan.workspaces.push(Workspace {
                    id: workspace.clone(),
                    created_at: start - rng.below(30 * DAY as usize) as i64,
                    members,
                });
            }
            plan.purchases.push(Planned {
                purchase: Purchase::new(&workspace, start, &mut rng),
                workspace,
                months,
                bound: !unbound,
            });
        }
        plan.groups.sort_by_key(|g| g.at);
        plan
    }

    /// The group's bodies, as Stripe sends them.
    fn render(&self, group: &Group, rng: &mut Rng) -> Vec<admit::simulate::Event> {
        let purchase = &self.purchases[group.purchase].purchase;
        match group.kind {
            Kind::Checkout => purchase.checkout(rng),
            Kind::Renewal(month) => purchase.renewal_paid(month, group.at, rng),
            Kind::RenewalFailed(month) => purchase.in_month(month).renewal_failed(group.at, rng),
            Kind::Cancellation(month) => purchase
                .in_month(month)
                .cancellation_scheduled(group.at, rng),
        }
    }

    /// The workspace whose purchase renewed most often (its pages list the
    /// most), the first of them.
    fn longest(&self) -> &str {
        self.purchases
            .iter()
            .filter(|p| p.bound)
            .rev()
            .max_by_key(|p| p.months)
            .map_or("", |p| p.workspace.as_str())
    }
}

/// An inbox row for `body` as the webhook handler would have stored it
/// when Stripe delivered it, a moment after `created`.
fn stored(body: Vec<u8>, rng: &mut Rng) -> anyhow::Result<NewEvent> {
    let created = serde_json::from_slice::<serde_json::Value>(&body)?["created"]
        .as_i64()
        .context("a body without `created`")?;
    let received_ms = created * 1000 + 200 + rng.below(3_000) as i64;
    let headers = BTreeMap::from([
        (
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        (
            "stripe-signature".to_owned(),
            admit_stripe::signature::sign(&body, SECRET, Timestamp::from_unix(created)),
        ),
        ("user-agent".to_owned(), USER_AGENT.to_owned()),
    ]);
    Ok(admit::inbox::new_event(
        body,
        headers,
        EventSource::Webhook,
        received_ms,
    )?)
}

/// Stores the plan's events batch by batch, each settled by the processor
/// before the next, while the sender sends what they queued.
async fn fill(admit: &Running, plan: &Plan) -> anyhow::Result<()> {
    // The sender mostly waits for its mail files and commits to reach the
    // disk: beside the processor, not after it.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sender = admit.sender.clone();
    let sending = tokio::spawn(async move {
        loop {
            sender.drain().await?;
            tokio::select! {
                _ = &mut stopped => return Ok::<_, admit_store::StoreError>(()),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    let stored = store_all(admit, plan).await;
    let _ = stop.send(());
    sending.await??;
    stored
}

async fn store_all(admit: &Running, plan: &Plan) -> anyhow::Result<()> {
    let mut rng = Rng::new();
    let mut batch = Vec::with_capacity(BATCH + 4);
    let mut stored_so_far = 0;
    let started = Instant::now();
    for group in &plan.groups {
        for event in plan.render(group, &mut rng) {
            batch.push(stored(event.body, &mut rng)?);
        }
        if batch.len() >= BATCH {
            stored_so_far += settle(admit, &mut batch).await?;
            if stored_so_far % 10_000 < BATCH {
                eprintln!(
                    "console: {stored_so_far} events stored and settled in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    settle(admit, &mut batch).await?;
    Ok(())
}

async fn settle(admit: &Running, batch: &mut Vec<NewEvent>) -> anyhow::Result<usize> {
    let n = batch.len();
    admit.store.insert_events(batch).await?;
    batch.clear();
    admit.processor.drain().await?;
    Ok(n)
}

/// A page and its timings.
struct Timed {
    label: String,
    sample: Sample,
}

/// One dialect's seeding and timings.
struct Measured {
    seeding: Duration,
    floor: Sample,
    /// The first `/admin` after seeding: the readiness memo not cached yet.
    uncached: f64,
    pages: Vec<Timed>,
    /// `readiness_facts` over the memo's window, and over every event.
    facts: (Sample, Sample),
}

async fn measure(admit: &Running, plan: &Plan, dialect: Dialect<'_>) -> anyhow::Result<Measured> {
    let started = Instant::now();
    fill(admit, plan).await?;
    if let Dialect::Postgres(url) = dialect {
        // What autovacuum does within a minute or two of such a load: the
        // planner's statistics, so that it plans as it would in production.
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    let seeding = started.elapsed();
    eprintln!(
        "console: {dialect} seeded in {:.0} s",
        seeding.as_secs_f64()
    );

    let store = admit.store.as_ref();
    let now = admit::Clock::now(&admit::SystemClock);
    store
        .add_operator(
            OPERATOR,
            OperatorRole::Support,
            &OperatorSecret::PasswordHash(admit::operators::hash_password(PASSWORD)?),
            &Actor::System(SystemTask::OperatorCli),
            now,
        )
        .await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = admit.url.as_str();
    let cookie = sign_in(&client, url).await?;

    // What the pages show: the longest-lived workspace, its ids, a held case.
    let workspace = plan.longest().to_owned();
    let workspace_id = admit_core::WorkspaceId::parse(workspace.clone())?;
    let invoice = store
        .events(&EventQuery {
            workspace: Some(workspace_id.clone()),
            event_type: Some("invoice.paid".to_owned()),
            limit: 1,
            ..EventQuery::default()
        })
        .await?
        .items
        .into_iter()
        .next()
        .context("the workspace has no paid invoice")?;
    let invoice_id = store
        .get_event(&invoice.id)
        .await?
        .and_then(|e| e.object_id)
        .context("the invoice event names no invoice")?;
    let case = store
        .cases(&CaseQuery {
            state: Some("held".to_owned()),
            kind: Some("missing_workspace".to_owned()),
            limit: 1,
            ..CaseQuery::default()
        })
        .await?
        .items
        .into_iter()
        .next()
        .context("no held missing_workspace case")?;
    let message = store
        .outbox(&OutboxQuery {
            workspace: Some(workspace_id),
            limit: 1,
            ..OutboxQuery::default()
        })
        .await?
        .items
        .into_iter()
        .next()
        .context("the workspace has no mail")?;
    let customer = invoice.customer_id.context("the invoice has no customer")?;
    let subscription = invoice
        .subscription_id
        .context("the invoice has no subscription")?;

    let floor = sample(&client, url, None, "/healthz").await?;
    let started = Instant::now();
    get(&client, url, Some(&cookie), "/admin").await?;
    let uncached = started.elapsed().as_secs_f64() * 1e3;
    let next = next_pages(&client, url, &cookie, "/admin/events", DEEP).await?;
    let pages = [
        ("/admin".to_owned(), "`/admin` (memo cached)".to_owned()),
        ("/admin/cases".to_owned(), "`/admin/cases`".to_owned()),
        (
            format!("/admin/cases/{}", case.id),
            "`/admin/cases/{id}` (held, missing_workspace)".to_owned(),
        ),
        ("/admin/events".to_owned(), "`/admin/events`".to_owned()),
        (
            "/admin/events?status=processed".to_owned(),
            "`/admin/events?status=processed`".to_owned(),
        ),
        (
            "/admin/events?status=held".to_owned(),
            "`/admin/events?status=held` (a rare status)".to_owned(),
        ),
        (
            "/admin/events?type=invoice.paid".to_owned(),
            "`/admin/events?type=invoice.paid`".to_owned(),
        ),
        (next[0].clone(), "`/admin/events`, page 2".to_owned()),
        (
            next[DEEP - 1].clone(),
            format!(
                "`/admin/events`, page {} (next-page links followed)",
                DEEP + 1
            ),
        ),
        (
            format!("/admin/events/{}", invoice.id),
            "`/admin/events/{id}` (invoice.paid)".to_owned(),
        ),
        ("/admin/outbox".to_owned(), "`/admin/outbox`".to_owned()),
        (
            format!("/admin/outbox/{}", message.id),
            "`/admin/outbox/{id}`".to_owned(),
        ),
        (
            "/admin/workspaces".to_owned(),
            "`/admin/workspaces`".to_owned(),
        ),
        (
            format!("/admin/workspaces/{workspace}"),
            "`/admin/workspaces/{id}`".to_owned(),
        ),
        (
            format!("/admin/search?q={}", traffic::owner(&workspace)),
            "`/admin/search?q=` an email".to_owned(),
        ),
        (
            format!("/admin/search?q={customer}"),
            "`/admin/search?q=cus_…`".to_owned(),
        ),
        (
            format!("/admin/search?q={subscription}"),
            "`/admin/search?q=sub_…`".to_owned(),
        ),
        (
            format!("/admin/search?q={invoice_id}"),
            "`/admin/search?q=in_…`".to_owned(),
        ),
    ];
    let mut timed = Vec::new();
    for (path, label) in pages {
        timed.push(Timed {
            label,
            sample: sample(&client, url, Some(&cookie), &path).await?,
        });
    }

    let window = now.plus_seconds(-admit_core::readiness::RECENT_SECS);
    let facts = (
        time_facts(store, window).await?,
        time_facts(store, Timestamp::from_unix(0)).await?,
    );
    Ok(Measured {
        seeding,
        floor,
        uncached,
        pages: timed,
        facts,
    })
}

async fn time_facts(store: &dyn admit_store::Store, since: Timestamp) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let started = Instant::now();
    for _ in 0..FACTS_SAMPLES {
        let start = Instant::now();
        store.readiness_facts(since).await?;
        sample.latencies.push(start.elapsed().as_secs_f64() * 1e3);
        sample.sent += 1;
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_by(f64::total_cmp);
    Ok(sample)
}

/// Signs in as a browser does: the form sets a token cookie the post must
/// repeat in its `csrf` field; the answer sets the session cookie.
async fn sign_in(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{url}/admin/login")).send().await?;
    anyhow::ensure!(
        form.status().is_success(),
        "GET /admin/login: {}",
        form.status()
    );
    let token = cookie(&form, "admit_login_csrf").context("no sign-in token cookie")?;
    let html = form.text().await?;
    let csrf = hidden(&html, "csrf").context("no csrf field in the sign-in form")?;
    let answer = client
        .post(format!("{url}/admin/login"))
        .header(COOKIE, format!("admit_login_csrf={token}"))
        .form(&[
            ("name", OPERATOR),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
            ("next", "/admin"),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_redirection(),
        "POST /admin/login: {}",
        answer.status()
    );
    let session = cookie(&answer, "admit_session").context("no session cookie")?;
    Ok(format!("admit_session={session}"))
}

/// The value a `Set-Cookie` of the response gives cookie `name`.
fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// The value of the hidden form field `name`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let after = html.split_once(&format!("name=\"{name}\" value=\""))?.1;
    Some(unescape(after.split_once('"')?.0))
}

/// The `href` of the page's `a#next-page`.
fn next_link(html: &str) -> Option<String> {
    let after = html.split_once("id=\"next-page\" href=\"")?.1;
    Some(unescape(after.split_once('"')?.0))
}

/// Undoes the template engine's HTML escaping of an attribute.
fn unescape(raw: &str) -> String {
    raw.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The next-page links from `start` on, `pages` of them.
async fn next_pages(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    start: &str,
    pages: usize,
) -> anyhow::Result<Vec<String>> {
    let mut links = Vec::with_capacity(pages);
    let mut path = start.to_owned();
    while links.len() < pages {
        let html = get(client, url, Some(cookie), &path).await?;
        path = next_link(&html).with_context(|| format!("{path} has no next page"))?;
        links.push(path.clone());
    }
    Ok(links)
}

/// A page's body; anything but 200 is an error.
async fn get(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    path: &str,
) -> anyhow::Result<String> {
    let mut request = client.get(format!("{url}{path}"));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    anyhow::ensure!(status.as_u16() == 200, "GET {path} answered {status}");
    Ok(body)
}

/// `SAMPLES` requests of `path` one after another, each read to its end.
async fn sample(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    path: &str,
) -> anyhow::Result<Sample> {
    let mut sample = Sample::default();
    let started = Instant::now();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        get(client, url, cookie, path).await?;
        sample.latencies.push(start.elapsed().as_secs_f64() * 1e3);
        sample.sent += 1;
    }
    sample.elapsed = started.elapsed();
    sample.latencies.sort_by(f64::total_cmp);
    Ok(sample)
}

fn max(sample: &Sample) -> f64 {
    sample.latencies.last().copied().unwrap_or(f64::NAN)
}

fn verdict(ms: f64) -> &'static str {
    if ms < TARGET_MS { "PASS" } else { "**OVER**" }
}

impl Measured {
    fn rows(&self, dialect: &str, statuses: &str, counts: &str) -> Vec<String> {
        let floor = &self.floor;
        let floor_cell = format!(
            "`/healthz` p50 {:.2} ms · p95 {:.2} ms",
            floor.percentile(50.0),
            floor.percentile(95.0)
        );
        let mut rows = vec![format!(
            "| console, {dialect}: seeded (untimed, {:.0} s) | {statuses}; {counts} | | |",
            self.seeding.as_secs_f64()
        )];
        rows.push(format!(
            "| console, {dialect}: `/admin`, first load (memo not cached: readiness facts, mail check) | {:.1} ms | {floor_cell} | {:.0}× · {} |",
            self.uncached,
            self.uncached / floor.percentile(50.0),
            verdict(self.uncached)
        ));
        for page in &self.pages {
            let s = &page.sample;
            rows.push(format!(
                "| console, {dialect}: {} | p50 {:.1} ms · p95 {:.1} ms · max {:.1} ms | {floor_cell} | {:.0}× · {} |",
                page.label,
                s.percentile(50.0),
                s.percentile(95.0),
                max(s),
                s.percentile(50.0) / floor.percentile(50.0),
                verdict(s.percentile(95.0))
            ));
        }
        for (what, s) in [
            ("the memo's last 24 hours", &self.facts.0),
            (
                "every event, as if all had come within 24 hours (`since` = 0)",
                &self.facts.1,
            ),
        ] {
            rows.push(format!(
                "| console, {dialect}: the readiness facts query alone, over {what} ({FACTS_SAMPLES} calls of `readiness_facts`) | p50 {:.1} ms · max {:.1} ms | | {} |",
                s.percentile(50.0),
                max(s),
                verdict(s.percentile(50.0))
            ));
        }
        rows
    }
}

const COUNTS: &str = "SELECT 'workspaces', COUNT(*) FROM workspaces
     UNION ALL SELECT 'members', COUNT(*) FROM members
     UNION ALL SELECT 'held ' || kind || ' cases', COUNT(*) FROM cases
               WHERE state = 'held' GROUP BY kind
     UNION ALL SELECT 'messages ' || state, COUNT(*) FROM outbox GROUP BY state";

fn counted(rows: &[(String, i64)]) -> String {
    rows.iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn sqlite_counts(db: &Path) -> anyhow::Result<String> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(counted(&rows))
}

async fn pg_counts(url: &str) -> anyhow::Result<String> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&mut conn).await?;
    conn.close().await?;
    Ok(counted(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_fields_are_read_as_a_browser_reads_them() {
        let html = r#"<p class="pager"><a id="next-page" href="&#x2f;admin&#x2f;events?type=invoice.paid&amp;cursor=ev.1795000000.evt_1">Next page →</a></p>"#;
        assert_eq!(
            next_link(html).as_deref(),
            Some("/admin/events?type=invoice.paid&cursor=ev.1795000000.evt_1")
        );
        let form = r#"<input type="hidden" name="csrf" value="0a1b"><input type="hidden" name="next" value="&#x2f;admin">"#;
        assert_eq!(hidden(form, "csrf").as_deref(), Some("0a1b"));
        assert_eq!(hidden(form, "next").as_deref(), Some("/admin"));
    }

    #[test]
    fn a_plan_makes_about_twenty_events_a_workspace_in_time_order() {
        let now = 1_795_000_000;
        let plan = Plan::new(10_000, now);
        assert!((10_000..10_050).contains(&plan.events));
        let per_workspace = plan.events as f64 / plan.purchases.len() as f64;
        assert!((15.0..25.0).contains(&per_workspace), "{per_workspace}");
        assert!(plan.groups.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan.groups.iter().all(|g| g.at < now));
        assert!(plan.workspaces.len() < plan.purchases.len());
        let longest = plan.longest();
        assert!(plan.workspaces.iter().any(|w| w.id == longest));
    }
}

//! The cost of a long history: every event is derived against what is
//! stored about its subscription, so a subscription renewed monthly for
//! years must not make its next renewal much dearer than a fresh purchase's
//! first. Both are timed in the same database, by one processor stepped
//! directly (the background one is off), taking turns so that the shared
//! machine's noise falls on both.

use std::time::{Duration, Instant};

use admit::simulate::{Event, Purchase};

use crate::{Running, SECRET, TOKEN, load, traffic};

/// What `renewal` moves the period by, and the gap between renewals.
const MONTH: i64 = 30 * 86_400;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub subscriptions: usize,
    pub months: u32,
    pub rounds: u32,
}

/// One timed drain.
#[derive(Debug, Clone, Copy, Default)]
struct Timed {
    events: usize,
    elapsed: Duration,
}

impl Timed {
    fn ms_per_event(self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3 / self.events.max(1) as f64
    }

    fn add(self, other: Timed) -> Timed {
        Timed {
            events: self.events + other.events,
            elapsed: self.elapsed + other.elapsed,
        }
    }
}

pub async fn run(options: Options, out: &mut Vec<String>) -> anyhow::Result<()> {
    let Options {
        subscriptions: n,
        months,
        rounds,
    } = options;
    let old: Vec<String> = (0..n).map(|i| format!("ws_hist{i:06}")).collect();
    let fresh: Vec<Vec<String>> = (0..rounds)
        .map(|r| (0..n).map(|i| format!("ws_fresh{r}x{i:06}")).collect())
        .collect();
    let mut workspaces = old.clone();
    workspaces.extend(fresh.iter().flatten().cloned());
    let admit = crate::start_admit(
        crate::Database::FreshSqlite {
            workspaces: &workspaces,
        },
        false,
    )
    .await?;
    let client = load::client(4)?;

    // Every timed renewal lies in the past (the last one a minute ago), a
    // month after the one before it, so that the periods they open are the
    // same for the long histories and the fresh purchases.
    let now = admit::Clock::now(&admit::SystemClock).unix();
    let renewal_at = |round: u32| now - 60 - i64::from(rounds - 1 - round) * MONTH;

    let mut long: Vec<Purchase> = old
        .iter()
        .map(|workspace| {
            let mut purchase = purchase(workspace);
            purchase.t = renewal_at(0) - i64::from(months + 1) * MONTH;
            purchase.created = Some(purchase.t);
            purchase
        })
        .collect();
    // Month by month, as Stripe would have sent them, so that whatever admit
    // keeps per processed event accumulates as it would have.
    let started = Instant::now();
    let mut delivered = settle(&admit, long.iter().map(Purchase::checkout)).await?;
    for _ in 0..months {
        for purchase in &mut long {
            purchase.t += MONTH;
        }
        delivered += settle(&admit, long.iter().map(Purchase::renewal)).await?;
    }
    let setup = started.elapsed();
    eprintln!(
        "history: {n} subscriptions × {months} months set up in {:.1} s",
        setup.as_secs_f64()
    );

    let mut totals = (Timed::default(), Timed::default());
    let mut rows = Vec::new();
    for round in 0..rounds {
        let mut new: Vec<Purchase> = fresh[round as usize]
            .iter()
            .map(|workspace| {
                let mut purchase = purchase(workspace);
                purchase.t = renewal_at(round) - MONTH;
                purchase.created = Some(purchase.t);
                purchase
            })
            .collect();
        settle(&admit, new.iter().map(Purchase::checkout)).await?;
        let young = timed_renewal(&admit, &client, &mut new).await?;
        let aged = timed_renewal(&admit, &client, &mut long).await?;
        totals = (totals.0.add(aged), totals.1.add(young));
        rows.push(format!(
            "| renewal after {months} monthly renewals vs a fresh purchase's first, {n} subscriptions each, round {}/{rounds} | {months} months: {:.2} ms/event · fresh: {:.2} ms/event ({} and {} events, one processor's `drain`) | | history ÷ fresh {:.2}× |",
            round + 1,
            aged.ms_per_event(),
            young.ms_per_event(),
            aged.events,
            young.events,
            aged.ms_per_event() / young.ms_per_event()
        ));
        eprintln!("history: round {} done", round + 1);
    }
    let statuses = crate::seed::statuses(admit._dir.path()).await?;
    out.push(format!(
        "| history set-up, untimed: {n} subscriptions × (checkout + {months} renewals), settled month by month | {delivered} events in {:.1} s | | |",
        setup.as_secs_f64()
    ));
    out.append(&mut rows);
    let (aged, young) = totals;
    out.push(format!(
        "| renewal after {months} monthly renewals vs fresh, all {rounds} rounds | {months} months: {:.2} ms/event · fresh: {:.2} ms/event (database: {statuses}) | | history ÷ fresh {:.2}× (target ≤ 2×) |",
        aged.ms_per_event(),
        young.ms_per_event(),
        aged.ms_per_event() / young.ms_per_event()
    ));
    let _ = admit.stop.send(());
    Ok(())
}

fn purchase(workspace: &str) -> Purchase {
    Purchase::new(&traffic::owner(workspace), Some(workspace), traffic::PRICE)
}

/// Delivers each purchase's events (taking turns, each in its own order)
/// and settles them, untimed; returns how many were delivered.
async fn settle(
    admit: &Running,
    lifecycles: impl Iterator<Item = Vec<Event>>,
) -> anyhow::Result<usize> {
    let delivered = deliver(admit, lifecycles).await?;
    admit.processor.drain().await?;
    let pending = admit.store.pending_events().await?;
    anyhow::ensure!(pending == 0, "{pending} events still pending after a drain");
    Ok(delivered)
}

async fn deliver(
    admit: &Running,
    lifecycles: impl Iterator<Item = Vec<Event>>,
) -> anyhow::Result<usize> {
    let mut lifecycles: Vec<std::vec::IntoIter<Event>> = lifecycles.map(Vec::into_iter).collect();
    let mut bodies = Vec::new();
    loop {
        let before = bodies.len();
        bodies.extend(
            lifecycles
                .iter_mut()
                .filter_map(|l| l.next().map(|e| e.body)),
        );
        if bodies.len() == before {
            break;
        }
    }
    let count = bodies.len();
    let sent = load::closed_loop(
        &[&admit.url],
        SECRET,
        std::sync::Arc::new(bodies),
        16,
        Duration::from_secs(600),
    )
    .await?;
    anyhow::ensure!(
        sent.failed == 0 && sent.sent == count,
        "{} of {count} deliveries failed",
        count - sent.sent
    );
    Ok(count)
}

/// Delivers the next month's renewal of each purchase and times the drains
/// that settle it. A renewal's events arrive apart in practice (Stripe
/// finalizes the invoice about an hour after the period moves), so each
/// event is delivered and drained on its own turn and gets a derivation of
/// its own; delivered together, the first would settle its sibling.
async fn timed_renewal(
    admit: &Running,
    client: &reqwest::Client,
    purchases: &mut [Purchase],
) -> anyhow::Result<Timed> {
    for purchase in purchases.iter_mut() {
        purchase.t += MONTH;
    }
    let renewals: Vec<Vec<Event>> = purchases.iter().map(Purchase::renewal).collect();
    let turns = renewals.iter().map(Vec::len).max().unwrap_or(0);
    let mut timed = Timed::default();
    for turn in 0..turns {
        let delivered = deliver(
            admit,
            renewals
                .iter()
                .map(|events| events.get(turn).cloned().into_iter().collect()),
        )
        .await?;
        let started = Instant::now();
        let events = admit.processor.drain().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            events == delivered,
            "the processor settled {events} of {delivered} renewal events"
        );
        timed = timed.add(Timed { events, elapsed });
    }
    renewed(admit, client, purchases).await?;
    Ok(timed)
}

/// Fails unless every subscription is active with the period its last
/// renewal opened: a renewal admit did not apply would time nothing.
async fn renewed(
    admit: &Running,
    client: &reqwest::Client,
    purchases: &[Purchase],
) -> anyhow::Result<()> {
    for purchase in purchases {
        let workspace = purchase.workspace.as_deref().unwrap_or_default();
        let billing: serde_json::Value = client
            .get(format!("{}/v1/workspaces/{workspace}/billing", admit.url))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let period_end = billing["current_period_end"].as_i64();
        anyhow::ensure!(
            billing["subscription_status"] == "active" && period_end == Some(purchase.t + MONTH),
            "{workspace} was not renewed: status {}, period end {period_end:?}, expected {}",
            billing["subscription_status"],
            purchase.t + MONTH
        );
    }
    Ok(())
}

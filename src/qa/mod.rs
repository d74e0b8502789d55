//! `admit qa-gate`: the decision table run end to end. Each scenario file
//! (`qa/scenarios/*.toml`, embedded) is one row; each row runs on a private
//! admit per delivery order (creation, reversed, shuffled, duplicated) with
//! the operator's own catalog and rules, and passes only when every order
//! ends where the row says. The verdict is recorded in the operator's audit
//! log for `admit readiness`.

mod report;
mod run;
pub mod scenario;
mod target;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

pub use report::{GateReport, RECORDED_ACTION, Row, Verdict};
use scenario::{Context, Source};
use target::Target;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;

/// What the release owner asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run only this scenario (`S8`).
    pub scenario: Option<String>,
    /// A running admit (Stripe test mode) to run the non-destructive subset against.
    pub against: Option<String>,
    /// Scenario files from this folder instead of the embedded ones.
    pub scenarios_dir: Option<PathBuf>,
    /// The paid plan purchases buy (default: the highest-ranked paid plan).
    pub plan: Option<String>,
    /// The Stripe price purchases buy (default: the plan's first price).
    pub price: Option<String>,
}

/// The plan and price the scenarios' purchases buy.
pub fn paid_plan(config: &Config, plan: Option<&str>) -> anyhow::Result<(String, String)> {
    let plan = match plan {
        Some(key) => config
            .catalog
            .get_str(key)
            .filter(|p| !p.free_tier)
            .ok_or_else(|| anyhow::anyhow!("plan {key:?} is not a paid plan of the catalog"))?,
        None => config
            .catalog
            .plans()
            .filter(|p| !p.free_tier)
            .max_by(|a, b| (a.rank, &b.key).cmp(&(b.rank, &a.key)))
            .ok_or_else(|| anyhow::anyhow!("the catalog has no paid plan"))?,
    };
    let price = plan
        .prices
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("plan {} lists no price", plan.key))?;
    Ok((plan.key.as_str().to_owned(), price))
}

/// Runs the gate and returns its report (recording it is the caller's).
pub async fn gate(config: &Config, options: &Options) -> anyhow::Result<GateReport> {
    let sources = match &options.scenarios_dir {
        Some(dir) => Source::from_dir(dir)?,
        None => Source::embedded(),
    };
    let sources: Vec<Source> = match &options.scenario {
        Some(wanted) => {
            let picked: Vec<Source> = sources
                .into_iter()
                .filter(|s| {
                    s.declared_id()
                        .is_some_and(|id| id.eq_ignore_ascii_case(wanted))
                })
                .collect();
            if picked.is_empty() {
                bail!("no scenario {wanted} (the ids are S1 to S18)");
            }
            picked
        }
        None => sources,
    };
    let (plan, default_price) = paid_plan(config, options.plan.as_deref())?;
    let price = options.price.clone().unwrap_or(default_price);
    let base = target::run_id();
    let started = SystemClock.now();
    let mut rows = vec![catalog_row(config, &price)];
    for (n, source) in sources.iter().enumerate() {
        let row = match &options.against {
            None => run_private(config, source, &base, n, &plan, &price).await,
            Some(url) => run_remote(config, source, url, &base, n, &plan, &price).await,
        };
        if let Some(row) = row {
            rows.push(row);
        }
    }
    let full =
        options.scenario.is_none() && options.scenarios_dir.is_none() && options.against.is_none();
    Ok(GateReport {
        started_at: started.unix(),
        finished_at: SystemClock.now().unix(),
        against: options.against.as_deref().map(crate::config::redact_url),
        scope: if full { "full" } else { "partial" },
        plan,
        price,
        catalog: catalog_fingerprint(config),
        rows,
    })
}

/// The catalog itself, before any purchase: the price bought is in a plan,
/// and every paid plan grants more than the free tier.
fn catalog_row(config: &Config, price: &str) -> Row {
    let mut why = Vec::new();
    if config.catalog.plan_for_price(price).is_none() {
        why.push(format!(
            "price {price} is in no plan of the catalog: every purchase of it is held unknown_price (S10); add it to a plan's prices"
        ));
    }
    let free = config.catalog.free_plan();
    for plan in config.catalog.plans().filter(|p| !p.free_tier) {
        if plan.entitlements == free.entitlements {
            why.push(format!(
                "plan {} grants what the free tier does: a purchaser would pay for nothing",
                plan.key.as_str()
            ));
        }
    }
    Row {
        id: "catalog".to_owned(),
        what: "the catalog knows the price bought; paid plans grant more than free".to_owned(),
        verdict: if why.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Hold
        },
        why,
        orders: Vec::new(),
    }
}

fn context(config: &Config, run: String, now: i64, plan: &str, price: &str) -> Context {
    Context {
        run,
        now,
        plan: plan.to_owned(),
        price: price.to_owned(),
        unknown_price: "price_qa_not_in_catalog".to_owned(),
        support: config.support_email.as_ref().map_or_else(
            || "support@qa.admit.test".to_owned(),
            |e| e.as_str().to_owned(),
        ),
        grace_days: config.grace_period_secs / 86_400,
        grace_secs: config.grace_period_secs,
    }
}

/// A row from a file that does not render: HOLD with the reason.
fn broken(source: &Source, error: &anyhow::Error) -> Row {
    Row {
        id: source.declared_id().unwrap_or_else(|| source.file.clone()),
        what: source.file.clone(),
        verdict: Verdict::Hold,
        why: vec![format!("the scenario file does not load: {error:#}")],
        orders: Vec::new(),
    }
}

async fn run_private(
    config: &Config,
    source: &Source,
    base: &str,
    n: usize,
    plan: &str,
    price: &str,
) -> Option<Row> {
    let now = SystemClock.now();
    let first = match scenario::render(
        source,
        &context(config, format!("{base}{n}"), now.unix(), plan, price),
    ) {
        Ok(first) => first,
        Err(error) => return Some(broken(source, &error)),
    };
    let runs = first.orders.iter().enumerate().map(|(k, order)| {
        let run = format!("{base}{n}x{k}");
        let context = context(config, run.clone(), now.unix(), plan, price);
        async move {
            let outcome = async {
                let scenario = scenario::render(source, &context)?;
                let target = Target::private(config, now, scenario.policy.as_deref()).await?;
                let findings = run::run(&scenario, *order, &run, &target, &config.catalog).await;
                target.stop().await;
                findings
            }
            .await;
            (*order, run, outcome)
        }
    });
    let results = futures::future::join_all(runs).await;
    Some(Row::from_runs(&first, results))
}

async fn run_remote(
    config: &Config,
    source: &Source,
    url: &str,
    base: &str,
    n: usize,
    plan: &str,
    price: &str,
) -> Option<Row> {
    let probe = match scenario::render(
        source,
        &context(
            config,
            format!("{base}{n}"),
            SystemClock.now().unix(),
            plan,
            price,
        ),
    ) {
        Ok(probe) => probe,
        Err(error) => return Some(broken(source, &error)),
    };
    if !probe.against {
        return None;
    }
    let mut results = Vec::new();
    for (k, order) in probe.orders.iter().enumerate() {
        let run = format!("{base}{n}x{k}");
        let outcome = async {
            let target = Target::remote(config, url)?;
            let scenario = scenario::render(
                source,
                &context(config, run.clone(), target.now().unix(), plan, price),
            )?;
            let findings = run::run(&scenario, *order, &run, &target, &config.catalog).await;
            let cleanup = remove_workspaces(&target, &scenario).await;
            let mut findings = findings?;
            if let Err(error) = cleanup {
                findings.push(format!("could not remove the QA workspaces: {error:#}"));
            }
            Ok(findings)
        }
        .await;
        results.push((*order, run, outcome));
    }
    Some(Row::from_runs(&probe, results))
}

/// Ends the run's subscriptions (a signed `customer.subscription.deleted`
/// each, so the running admit's billing agrees) and removes its workspaces.
async fn remove_workspaces(target: &Target, scenario: &scenario::Scenario) -> anyhow::Result<()> {
    for workspace in &scenario.workspaces {
        let billing = target
            .get(&format!("/v1/workspaces/{}/billing", workspace.id))
            .await?;
        if billing["stripe_subscription_id"].is_string() {
            let purchase = crate::simulate::Purchase::existing(&billing, &workspace.id)?;
            let mut ids = Vec::new();
            for event in purchase.cancel(false) {
                let header =
                    admit_stripe::signature::sign(&event.body, target.secret(), target.now());
                target.deliver(&event.body, Some(&header)).await?;
                ids.push(event.id);
            }
            target.settle(&ids).await?;
        }
        let answer = target
            .call("DELETE", &format!("/v1/workspaces/{}", workspace.id), None)
            .await?;
        if answer.status != 204 {
            bail!(
                "DELETE /v1/workspaces/{} answered {}: {}",
                workspace.id,
                answer.status,
                answer.text
            );
        }
    }
    Ok(())
}

/// A short hash of the catalog as configured: a gate result speaks for the
/// catalog it ran with, and a changed catalog needs a new run.
pub fn catalog_fingerprint(config: &Config) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for plan in config.catalog.plans() {
        let entry = serde_json::json!({
            "key": plan.key.as_str(), "prices": plan.prices, "free": plan.free_tier,
            "rank": plan.rank, "features": plan.entitlements.features,
            "limits": plan.entitlements.limits,
        });
        hasher.update(entry.to_string().as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Records the report in the operator's audit log (`qa_gate.completed`).
pub async fn record(
    store: &dyn admit_store::Store,
    report: &GateReport,
    now: admit_core::Timestamp,
) -> anyhow::Result<()> {
    let entry = admit_store::AuditEntry {
        at: now,
        actor: "system:qa-gate".to_owned(),
        action: report::RECORDED_ACTION.to_owned(),
        workspace_id: None,
        subject: Some("qa_gate".to_owned()),
        before: None,
        after: Some(report.summary()),
        cause: None,
    };
    store
        .append_audit(&entry)
        .await
        .context("cannot record the QA gate's result")?;
    Ok(())
}

//! Scenario files: one row of the decision table each, as a minijinja
//! template that renders to TOML. The template names the situation, the
//! Stripe events (the macros of `qa/stripe.j2`), the API calls, and what
//! admit must end in: outcome, scenario, billing, access, cases, messages.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use minijinja::value::{Kwargs, Value as JinjaValue};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::Deserialize;

/// The Stripe event macros every scenario imports as `stripe`.
pub const MACROS: &str = include_str!("../../qa/stripe.j2");

/// The scenario files shipped in the binary, in the order the gate runs them.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("S01.toml", include_str!("../../qa/scenarios/S01.toml")),
    ("S02.toml", include_str!("../../qa/scenarios/S02.toml")),
    ("S03.toml", include_str!("../../qa/scenarios/S03.toml")),
    ("S04.toml", include_str!("../../qa/scenarios/S04.toml")),
    ("S05.toml", include_str!("../../qa/scenarios/S05.toml")),
    (
        "S05-create.toml",
        include_str!("../../qa/scenarios/S05-create.toml"),
    ),
    ("S06.toml", include_str!("../../qa/scenarios/S06.toml")),
    ("S07.toml", include_str!("../../qa/scenarios/S07.toml")),
    ("S08.toml", include_str!("../../qa/scenarios/S08.toml")),
    ("S09.toml", include_str!("../../qa/scenarios/S09.toml")),
    ("S10.toml", include_str!("../../qa/scenarios/S10.toml")),
    ("S11.toml", include_str!("../../qa/scenarios/S11.toml")),
    ("S12.toml", include_str!("../../qa/scenarios/S12.toml")),
    ("S13.toml", include_str!("../../qa/scenarios/S13.toml")),
    ("S14.toml", include_str!("../../qa/scenarios/S14.toml")),
    ("S15.toml", include_str!("../../qa/scenarios/S15.toml")),
    ("S16.toml", include_str!("../../qa/scenarios/S16.toml")),
    ("S17.toml", include_str!("../../qa/scenarios/S17.toml")),
    ("S18.toml", include_str!("../../qa/scenarios/S18.toml")),
];

/// A scenario file before rendering.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    pub fn embedded() -> Vec<Source> {
        EMBEDDED
            .iter()
            .map(|(file, text)| Source {
                file: (*file).to_owned(),
                text: (*text).to_owned(),
            })
            .collect()
    }

    /// Every `*.toml` of a folder, by file name.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Vec<Source>> {
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the scenario folder {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                sources.push(Source { file, text });
            }
        }
        sources.sort_by(|a, b| a.file.cmp(&b.file));
        if sources.is_empty() {
            bail!("no *.toml scenario file in {}", dir.display());
        }
        Ok(sources)
    }

    /// The id a file declares (`id = "S8"`), read without rendering, so
    /// `--scenario` can pick files before any is run.
    pub fn declared_id(&self) -> Option<String> {
        self.text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("id")?.trim_start();
            let value = rest.strip_prefix('=')?.trim();
            Some(value.trim_matches('"').to_owned())
        })
    }
}

/// What a template may refer to besides its purchases.
#[derive(Debug, Clone)]
pub struct Context {
    /// Unique to one run of one scenario in one order: ids never collide.
    pub run: String,
    /// The time the private admit's clock starts at.
    pub now: i64,
    /// The paid plan the purchases buy, and its price.
    pub plan: String,
    pub price: String,
    /// A price that is in no plan of the catalog.
    pub unknown_price: String,
    pub support: String,
    pub grace_days: i64,
    pub grace_secs: i64,
}

const DAY: i64 = 86_400;

/// Renders a scenario file and parses the TOML it renders to.
pub fn render(source: &Source, context: &Context) -> anyhow::Result<Scenario> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("stripe", MACROS)
        .context("qa/stripe.j2 is not a valid template")?;
    env.add_filter(
        "fromjson",
        |text: String| -> Result<JinjaValue, JinjaError> {
            serde_json::from_str::<serde_json::Value>(&text)
                .map(JinjaValue::from_serialize)
                .map_err(|e| JinjaError::new(ErrorKind::InvalidOperation, e.to_string()))
        },
    );
    let run = context.run.clone();
    env.add_function("ws", move |key: String| format!("qa{run}_{key}"));
    let counter = Arc::new(Mutex::new(0u32));
    let run = context.run.clone();
    let now = context.now;
    let price = context.price.clone();
    env.add_function(
        "purchase",
        move |key: String, kwargs: Kwargs| -> Result<JinjaValue, JinjaError> {
            let email: String = kwargs.get("email")?;
            let workspace: Option<String> = kwargs.get("workspace")?;
            let bought_at: Option<i64> = kwargs.get("at")?;
            let price_override: Option<String> = kwargs.get("price")?;
            let customer: Option<String> = kwargs.get("customer")?;
            kwargs.assert_all_used()?;
            let n = {
                let mut n = counter
                    .lock()
                    .map_err(|_| JinjaError::new(ErrorKind::InvalidOperation, "poisoned"))?;
                *n += 1;
                *n
            };
            let id = format!("qa{run}{key}");
            let mut p = BTreeMap::new();
            p.insert("key", JinjaValue::from(key.clone()));
            p.insert("n", JinjaValue::from(n));
            p.insert("email", JinjaValue::from(email));
            p.insert(
                "workspace",
                JinjaValue::from(workspace.map(|w| format!("qa{run}_{w}"))),
            );
            p.insert(
                "price",
                JinjaValue::from(price_override.unwrap_or_else(|| price.clone())),
            );
            p.insert("t", JinjaValue::from(now + bought_at.unwrap_or(-10 * DAY)));
            p.insert("sub", JinjaValue::from(format!("sub_{id}")));
            p.insert(
                "cus",
                JinjaValue::from(customer.unwrap_or_else(|| format!("cus_{id}"))),
            );
            p.insert("cs", JinjaValue::from(format!("cs_test_{id}")));
            p.insert("pi", JinjaValue::from(format!("pi_{id}")));
            p.insert("ch", JinjaValue::from(format!("ch_{id}")));
            p.insert("inv", JinjaValue::from(format!("in_{id}")));
            Ok(JinjaValue::from(p))
        },
    );
    for (name, value) in [
        ("run", JinjaValue::from(context.run.clone())),
        ("now", JinjaValue::from(context.now)),
        ("day", JinjaValue::from(DAY)),
        ("plan", JinjaValue::from(context.plan.clone())),
        ("price", JinjaValue::from(context.price.clone())),
        (
            "unknown_price",
            JinjaValue::from(context.unknown_price.clone()),
        ),
        ("support", JinjaValue::from(context.support.clone())),
        ("grace_days", JinjaValue::from(context.grace_days)),
        ("grace_secs", JinjaValue::from(context.grace_secs)),
    ] {
        env.add_global(name, value);
    }
    let text = format!("{{% import \"stripe\" as stripe %}}\n{}", source.text);
    env.add_template_owned(source.file.clone(), text)
        .with_context(|| format!("{} is not a valid template", source.file))?;
    let rendered = env
        .get_template(&source.file)
        .and_then(|t| t.render(()))
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", source.file))?;
    toml::from_str(&rendered)
        .with_context(|| format!("{} does not render to a scenario", source.file))
}

/// The order a run delivers the scenario's events in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// By `created`, as Stripe creates them.
    Creation,
    Reversed,
    /// A shuffle seeded by the run, printed with a failure.
    Shuffled,
    /// Creation order, every event delivered twice (the second answers S6).
    Duplicated,
}

impl Order {
    pub const ALL: [Order; 4] = [
        Order::Creation,
        Order::Reversed,
        Order::Shuffled,
        Order::Duplicated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Creation => "creation",
            Order::Reversed => "reversed",
            Order::Shuffled => "shuffled",
            Order::Duplicated => "duplicated",
        }
    }
}

fn all_orders() -> Vec<Order> {
    Order::ALL.to_vec()
}

/// A rendered scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    pub what: String,
    /// `hold` or `create_workspace`: the unmatched-purchase policy this row
    /// is about, whatever the operator configured.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default = "all_orders")]
    pub orders: Vec<Order>,
    /// Part of the subset `--against` may run on a live admit.
    #[serde(default)]
    pub against: bool,
    /// Deliver each event this many times at once (S6).
    #[serde(default)]
    pub concurrent_copies: Option<u32>,
    #[serde(default, rename = "workspace")]
    pub workspaces: Vec<WorkspaceSetup>,
    #[serde(default, rename = "event")]
    pub events: Vec<EventTemplate>,
    #[serde(default, rename = "delivery")]
    pub deliveries: Vec<RawDelivery>,
    #[serde(default, rename = "request")]
    pub requests: Vec<Request>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSetup {
    pub id: String,
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTemplate {
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    /// `data.object` as JSON text.
    pub object: String,
    /// `data.previous_attributes` as JSON text.
    #[serde(default)]
    pub previous: Option<String>,
}

/// How a raw delivery is signed (S14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    Valid,
    WrongSecret,
    /// Signed ten minutes ago: outside the tolerance.
    Stale,
    Missing,
    /// Signed as usual, then one byte of the body changed.
    Tampered,
}

/// A webhook delivery the scenario writes out itself (bad input, S14).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub what: String,
    pub body: String,
    pub signing: Signing,
    /// Pad the body with spaces to this many bytes.
    #[serde(default)]
    pub pad_to: Option<usize>,
    pub status: u16,
    pub code: String,
    /// An event id that must not be stored afterwards.
    #[serde(default)]
    pub not_stored: Option<String>,
}

/// An API call with the answer it must get (S13).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub what: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<String>,
    pub status: u16,
    #[serde(default)]
    pub code: Option<String>,
}

/// The kind of end the row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every event processed; the purchase provisions (or changes billing).
    Provisioned,
    /// Every event processed and nothing held, but nothing paid either (S18).
    NotProvisioned,
    /// An event is held for a person.
    Held,
    /// Deliveries refused with 4xx; nothing stored.
    Rejected,
    /// API calls refused; nothing created.
    Refused,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub outcome: Outcome,
    /// The scenario admit must name on an event or a case.
    #[serde(default)]
    pub scenario: Option<String>,
    /// The order whose run must show `scenario` (S7 shows only when late).
    #[serde(default)]
    pub scenario_order: Option<Order>,
    #[serde(default)]
    pub billing: Vec<BillingExpect>,
    #[serde(default)]
    pub access: Vec<AccessExpect>,
    /// Exactly these cases, no other.
    #[serde(default, rename = "case")]
    pub cases: Vec<CaseExpect>,
    /// Exactly these messages (kind, recipient), each once; withdrawn ones aside.
    #[serde(default, rename = "message")]
    pub messages: Vec<MessageExpect>,
    #[serde(default)]
    pub welcome: Vec<WelcomeExpect>,
    /// A workspace admit created for an unmatched purchase (`create_workspace`).
    #[serde(default)]
    pub created_workspace: Option<CreatedWorkspace>,
}

/// The workspace admit made for a purchaser: found by the onboarding
/// message to its owner, then read through the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedWorkspace {
    pub owner: String,
    pub plan: String,
}

/// A billing field's expected value; `"none"` for null.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingExpect {
    pub workspace: String,
    #[serde(default)]
    pub subscription_status: Option<String>,
    #[serde(default)]
    pub subscription_plan: Option<String>,
    #[serde(default)]
    pub stripe_customer_id: Option<String>,
    #[serde(default)]
    pub stripe_subscription_id: Option<String>,
    #[serde(default)]
    pub purchaser_email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessExpect {
    pub workspace: String,
    pub email: String,
    pub allowed: bool,
    #[serde(default)]
    pub role: Option<String>,
    /// The plan in force; its entitlements must be the catalog's.
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Ask this many seconds after the events (the clock moves; local runs only).
    #[serde(default)]
    pub after_seconds: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseExpect {
    pub kind: String,
    pub state: String,
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    /// `details.action` (`refund_duplicate`, `cancel_lapsed`).
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageExpect {
    pub kind: String,
    pub to: String,
}

/// The purchaser's success page shows this text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WelcomeExpect {
    pub session: String,
    pub contains: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            run: "t1".into(),
            now: 1_795_000_000,
            plan: "pro".into(),
            price: "price_Pro".into(),
            unknown_price: "price_qa_unknown".into(),
            support: "support@qa.test".into(),
            grace_days: 7,
            grace_secs: 7 * 86_400,
        }
    }

    #[test]
    fn every_embedded_scenario_renders() {
        for source in Source::embedded() {
            let scenario =
                render(&source, &context()).unwrap_or_else(|e| panic!("{}: {e:#}", source.file));
            assert_eq!(
                Some(scenario.id.clone()),
                source.declared_id(),
                "{}",
                source.file
            );
            for event in &scenario.events {
                serde_json::from_str::<serde_json::Value>(&event.object)
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", source.file, event.event_type));
            }
        }
    }

    #[test]
    fn every_scenario_file_on_disk_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("qa/scenarios");
        let on_disk = Source::from_dir(&dir).expect("the scenario folder");
        let mut embedded: Vec<&str> = EMBEDDED.iter().map(|(f, _)| *f).collect();
        embedded.sort_unstable();
        let files: Vec<&str> = on_disk.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(files, embedded);
    }

    #[test]
    fn the_checkout_macro_writes_four_events_in_creation_order_with_run_ids() {
        let source = Source {
            file: "x.toml".into(),
            text: r#"id = "X"
what = "x"
{% set a = purchase("a", email="dana@acme.test", workspace="acme") %}
{{ stripe.checkout(a) }}
[expect]
outcome = "provisioned"
"#
            .into(),
        };
        let scenario = render(&source, &context()).expect("renders");
        let types: Vec<&str> = scenario
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "customer.subscription.created",
                "invoice.paid",
                "customer.subscription.updated",
                "checkout.session.completed"
            ]
        );
        let session: serde_json::Value =
            serde_json::from_str(&scenario.events[3].object).expect("json");
        assert_eq!(session["metadata"]["workspace_id"], "qat1_acme");
        assert_eq!(session["subscription"], "sub_qat1a");
        assert!(
            scenario
                .events
                .windows(2)
                .all(|w| w[0].created < w[1].created)
        );
    }

    #[test]
    fn a_typo_in_a_scenario_is_an_error_not_a_silent_pass() {
        let source = Source {
            file: "typo.toml".into(),
            text: "id = \"X\"\nwhat = \"x\"\n[expect]\noutcome = \"provisioned\"\nbiling = []\n"
                .into(),
        };
        assert!(render(&source, &context()).is_err());
        let undefined = Source {
            file: "undefined.toml".into(),
            text: "id = \"{{ nope }}\"\n".into(),
        };
        assert!(render(&undefined, &context()).is_err());
    }
}

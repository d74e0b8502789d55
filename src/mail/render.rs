//! The words of every message: subject, text and HTML of each outbox message
//! kind, rendered from templates embedded in the binary (`templates/`).
//!
//! Templates never see the raw payload: [`render_message`] reads it into a
//! `View` whose every field is present (absent or mistyped values become
//! `none` or a neutral wording), so the environment can be strict about
//! undefined names and a typo in a template fails the snapshot tests instead
//! of printing nothing.

use std::sync::LazyLock;

use minijinja::value::Value as TemplateValue;
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

/// What every message needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct MailContext<'a> {
    pub product_name: &'a str,
    pub support_email: Option<&'a str>,
    pub public_url: &'a str,
    pub app_home_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("template failed")]
    Template(#[source] minijinja::Error),
}

impl From<minijinja::Error> for RenderError {
    fn from(error: minijinja::Error) -> Self {
        RenderError::Template(error)
    }
}

/// Every message kind `admit_core::provisioning::MessageKind` can derive.
pub const KINDS: [&str; 7] = [
    "onboarding",
    "billing_contact_notice",
    "access_delayed",
    "duplicate_charge",
    "payment_failed",
    "cancellation",
    "support_alert",
];

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: [(&str, &str); 39] = templates![
    "_email.html",
    "_button.html",
    "_help.html",
    "_help.txt",
    "onboarding/subject.txt",
    "onboarding/body.txt",
    "onboarding/body.html",
    "billing_contact_notice/subject.txt",
    "billing_contact_notice/body.txt",
    "billing_contact_notice/body.html",
    "access_delayed/subject.txt",
    "access_delayed/body.txt",
    "access_delayed/body.html",
    "duplicate_charge/subject.txt",
    "duplicate_charge/body.txt",
    "duplicate_charge/body.html",
    "payment_failed/subject.txt",
    "payment_failed/body.txt",
    "payment_failed/body.html",
    "payment_failed_checkout/subject.txt",
    "payment_failed_checkout/body.txt",
    "payment_failed_checkout/body.html",
    "cancellation/subject.txt",
    "cancellation/body.txt",
    "cancellation/body.html",
    "support_alert/_short.txt",
    "support_alert/_explain.txt",
    "support_alert/_suggest.txt",
    "support_alert/subject.txt",
    "support_alert/body.txt",
    "support_alert/body.html",
    "welcome/_layout.html",
    "welcome/_help.html",
    "welcome/ready.html",
    "welcome/finishing.html",
    "welcome/held.html",
    "welcome/unknown.html",
    "welcome/pending.html",
    "welcome/failed.html",
];

fn build_environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(html_formatter);
    // Text bodies are written one sentence per line with tags on their own
    // lines; these two keep those tags from leaving blank lines behind.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("date", date);
    env.add_filter("feature", feature);
    env.add_filter("words", words);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

static ENVIRONMENT: LazyLock<Result<Environment<'static>, minijinja::Error>> =
    LazyLock::new(build_environment);

/// The configured environment; templates are parsed once, on first use.
pub(super) fn environment() -> Result<&'static Environment<'static>, RenderError> {
    ENVIRONMENT
        .as_ref()
        // minijinja errors are not `Clone`; the copy keeps the kind and the
        // message, which names the template and line.
        .map_err(|error| {
            RenderError::Template(minijinja::Error::new(error.kind(), error.to_string()))
        })
}

/// Parses every template, so a broken one stops start-up rather than the first send.
pub fn check_templates() -> Result<(), RenderError> {
    environment().map(|_| ())
}

/// minijinja's HTML escaping also turns `/` into `&#x2f;`, which leaves every
/// link as `https:&#x2f;&#x2f;…`: valid HTML, but unreadable in the source and
/// a risk with link rewriters that look for `https://` literally. Inside quoted
/// attributes and text, escaping `& < > " '` is enough.
fn html_formatter(
    out: &mut Output<'_>,
    state: &State<'_, '_>,
    value: &TemplateValue,
) -> Result<(), minijinja::Error> {
    // A custom formatter bypasses the engine's strict check on printing.
    if value.is_undefined() {
        return Err(ErrorKind::UndefinedError.into());
    }
    if state.auto_escape() != AutoEscape::Html || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let raw = value.to_string();
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    out.write_str(&escaped).map_err(minijinja::Error::from)
}

/// Unix seconds as a date in UTC, e.g. "25 November 2026".
fn date(unix: i64) -> Result<String, minijinja::Error> {
    let at = time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("{unix} is not a representable date"),
        )
    })?;
    Ok(format!("{} {} {}", at.day(), at.month(), at.year()))
}

/// Catalog keys as words: `audit_log` → "audit log".
fn words(key: &str) -> String {
    key.replace(['_', '-'], " ")
}

/// A feature key as a list item: `audit_log` → "Audit log", `sso` → "SSO".
/// The catalog has no display names; a lone word of three letters or fewer
/// is almost always an initialism (SSO, API, SLA).
fn feature(key: &str) -> String {
    let spaced = words(key);
    if !spaced.contains(' ') && spaced.len() <= 3 {
        return spaced.to_uppercase();
    }
    let mut chars = spaced.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Everything a message template may use. Options render as `none`, so the
/// templates test them before printing.
#[derive(Debug, Serialize)]
struct View<'a> {
    subject: String,
    product_name: &'a str,
    support_email: Option<&'a str>,
    public_url: &'a str,
    app_home_url: &'a str,
    recipient: &'a str,
    signin_link: Option<&'a str>,
    /// The workspace's name for sentences ("your workspace" when unknown).
    workspace: &'a str,
    workspace_name: Option<&'a str>,
    workspace_id: Option<&'a str>,
    /// The plan's name for sentences ("paid" when unknown: "the paid plan").
    plan: &'a str,
    plan_name: Option<&'a str>,
    features: Vec<&'a str>,
    limits: Vec<(&'a str, i64)>,
    purchase: Option<&'a str>,
    case_key: Option<&'a str>,
    case_id: Option<&'a str>,
    /// The case kind, from the case key's prefix (`missing_workspace:sub_…`).
    case_kind: Option<&'a str>,
    administrators: Vec<&'a str>,
    sign_in_email: &'a str,
    purchaser_email: Option<&'a str>,
    grace_ends: Option<i64>,
    access_ends: Option<i64>,
    /// A flavour of the case kind (`cancel_lapsed`, `plan_kept`).
    case_variant: Option<&'a str>,
    /// What an operator may do about the case, in order.
    case_actions: Vec<&'a str>,
    payment_charge: Option<&'a str>,
    payment_dispute: Option<&'a str>,
    payment_status: Option<&'a str>,
    payment_reason: Option<&'a str>,
    /// "49.00 USD"
    payment_amount: Option<String>,
}

/// Stripe amounts are in the currency's smallest unit; these have no decimals.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// And these have three.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

fn money(payment: &Value) -> Option<String> {
    let amount = payment.get("amount").and_then(Value::as_i64)?;
    let currency = text(payment, "currency").unwrap_or("");
    let code = currency.to_uppercase();
    let (whole, fraction) = if ZERO_DECIMAL.contains(&currency) {
        (amount.to_string(), String::new())
    } else if THREE_DECIMAL.contains(&currency) {
        (
            (amount / 1000).to_string(),
            format!(".{:03}", (amount % 1000).abs()),
        )
    } else {
        (
            (amount / 100).to_string(),
            format!(".{:02}", (amount % 100).abs()),
        )
    };
    Some(format!("{whole}{fraction} {code}").trim().to_owned())
}

fn text<'p>(payload: &'p Value, key: &str) -> Option<&'p str> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn texts<'p>(payload: &'p Value, key: &str) -> Vec<&'p str> {
    payload
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

impl<'a> View<'a> {
    fn new(
        recipient: &'a str,
        payload: &'a Value,
        signin_link: Option<&'a str>,
        ctx: &MailContext<'a>,
    ) -> Self {
        let workspace_name = text(payload, "workspace_name");
        let case_key = text(payload, "case_key");
        let mut limits: Vec<(&str, i64)> = payload
            .get("limits")
            .and_then(Value::as_object)
            .map(|limits| {
                limits
                    .iter()
                    .filter_map(|(name, value)| Some((name.as_str(), value.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        limits.sort_unstable();
        let payment = payload.get("payment").filter(|p| p.is_object());
        let payment_text = |key| payment.and_then(|p| text(p, key));
        let mut case_actions = texts(payload, "case_actions");
        if case_actions.is_empty() {
            case_actions = vec!["bind", "invite_purchaser", "mark_refunded", "dismiss"];
        }
        Self {
            subject: String::new(),
            product_name: ctx.product_name,
            support_email: ctx.support_email,
            public_url: ctx.public_url,
            app_home_url: ctx.app_home_url,
            recipient,
            signin_link,
            workspace: workspace_name.unwrap_or("your workspace"),
            workspace_name,
            workspace_id: text(payload, "workspace_id"),
            plan: text(payload, "plan_name").unwrap_or("paid"),
            plan_name: text(payload, "plan_name"),
            features: texts(payload, "features"),
            limits,
            purchase: text(payload, "purchase"),
            case_key,
            case_id: text(payload, "case_id"),
            case_kind: case_key
                .and_then(|key| key.split_once(':'))
                .map(|(kind, _)| kind),
            administrators: texts(payload, "administrators"),
            sign_in_email: text(payload, "sign_in_email").unwrap_or(recipient),
            purchaser_email: text(payload, "purchaser_email"),
            grace_ends: payload.get("grace_ends").and_then(Value::as_i64),
            access_ends: payload.get("access_ends").and_then(Value::as_i64),
            case_variant: text(payload, "case_variant"),
            case_actions,
            payment_charge: payment_text("charge"),
            payment_dispute: payment_text("dispute"),
            payment_status: payment_text("status"),
            payment_reason: payment_text("reason"),
            payment_amount: payment.and_then(money),
        }
    }
}

/// A subject is one header line: whatever a workspace name holds, no line break gets through.
fn one_line(raw: &str) -> String {
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn with_final_newline(mut body: String) -> String {
    body.truncate(body.trim_end().len());
    body.push('\n');
    body
}

/// `payload` is the outbox row's JSON; `signin_link` is set for onboarding (the sender mints the one-time token).
pub fn render_message(
    kind: &str,
    recipient: &str,
    payload: &serde_json::Value,
    signin_link: Option<&str>,
    ctx: &MailContext<'_>,
) -> Result<Rendered, RenderError> {
    let Some(kind) = KINDS.iter().find(|k| **k == kind) else {
        return Err(RenderError::UnknownKind(kind.to_owned()));
    };
    let env = environment()?;
    // A checkout whose delayed payment failed is a `payment_failed` of its
    // own: nothing was ever active, so there is no grace to speak of.
    let folder = if *kind == "payment_failed"
        && payload.get("checkout").and_then(Value::as_bool) == Some(true)
    {
        "payment_failed_checkout"
    } else {
        kind
    };
    let template = |part: &str| env.get_template(&format!("{folder}/{part}"));
    let mut view = View::new(recipient, payload, signin_link, ctx);
    let subject = one_line(&template("subject.txt")?.render(&view)?);
    view.subject.clone_from(&subject);
    let text = with_final_newline(template("body.txt")?.render(&view)?);
    let html = with_final_newline(template("body.html")?.render(&view)?);
    Ok(Rendered {
        subject,
        text,
        html,
    })
}

#[cfg(test)]
pub(super) mod samples {
    //! Fixed, realistic inputs shared by the snapshot tests and docs/messages.md.

    use serde_json::{Value, json};

    use super::MailContext;

    pub const CTX: MailContext<'static> = MailContext {
        product_name: "Northwind",
        support_email: Some("help@northwind.example"),
        public_url: "https://billing.northwind.example",
        app_home_url: "https://app.northwind.example",
    };

    pub const SIGNIN_LINK: &str =
        "https://app.northwind.example/signin?workspace=ws_acme01&token=st_5f3a9c2e7b1d4a60e8c7";

    /// One sample per kind: (kind, when it is sent, recipient, payload).
    pub struct Sample {
        /// The heading in docs/messages.md: the kind, and its flavour when it has several.
        pub name: &'static str,
        pub kind: &'static str,
        pub when: &'static str,
        pub recipient: &'static str,
        pub payload: Value,
    }

    /// The payload `outbox_write` builds, with every key present.
    fn payload(kind: &str, fields: Value) -> Value {
        let mut base = json!({
            "kind": kind,
            "workspace_id": null,
            "workspace_name": null,
            "plan": null,
            "plan_name": null,
            "features": null,
            "limits": null,
            "purchase": null,
            "case_key": null,
            "case_id": null,
            "administrators": [],
            "sign_in_email": null,
            "grace_ends": null,
            "access_ends": null,
        });
        if let (Some(base), Value::Object(fields)) = (base.as_object_mut(), fields) {
            base.extend(fields);
        }
        base
    }

    fn acme_pro(kind: &str, purchase: &str, extra: Value) -> Value {
        let mut fields = json!({
            "workspace_id": "ws_acme01",
            "workspace_name": "Acme Design",
            "plan": "pro",
            "plan_name": "Pro",
            "features": ["audit_log", "sso"],
            "limits": { "seats": 25 },
            "purchase": purchase,
        });
        if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
            fields.extend(extra);
        }
        payload(kind, fields)
    }

    pub fn all() -> Vec<Sample> {
        vec![
            Sample {
                name: "onboarding",
                kind: "onboarding",
                when: "S1–S4: a payment provisioned a workspace. To the purchaser when they administer it (or started the checkout), else to the workspace's owners.",
                recipient: "dana@acme.test",
                payload: acme_pro(
                    "onboarding",
                    "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                    json!({ "sign_in_email": "dana@acme.test" }),
                ),
            },
            Sample {
                name: "billing_contact_notice",
                kind: "billing_contact_notice",
                when: "S2: the purchaser paid for a workspace they do not administer. To the purchaser; no access is granted.",
                recipient: "accounts-payable@acme.test",
                payload: acme_pro(
                    "billing_contact_notice",
                    "sub_1SkQ7rB7WZ01zgkWm2Fd8KsY",
                    json!({
                        "case_key": "email_mismatch:sub_1SkQ7rB7WZ01zgkWm2Fd8KsY",
                        "case_id": "case_0b6e3d1f9a2c47e58d10",
                        "administrators": ["dana@acme.test", "lee@acme.test"],
                    }),
                ),
            },
            Sample {
                name: "access_delayed",
                kind: "access_delayed",
                when: "S5 (no workspace matched) and S10 (price not in the catalog): the payment is held. To the purchaser.",
                recipient: "sam@northpeak.test",
                payload: payload(
                    "access_delayed",
                    json!({
                        "purchase": "sub_1SkR4nB7WZ01zgkW8xQp2LmA",
                        "case_key": "missing_workspace:sub_1SkR4nB7WZ01zgkW8xQp2LmA",
                        "case_id": "case_c7d15b2c4eb9ec758631",
                    }),
                ),
            },
            Sample {
                name: "duplicate_charge",
                kind: "duplicate_charge",
                when: "S8: a second subscription for a workspace that already has one. To the purchaser of the second.",
                recipient: "lee@acme.test",
                payload: payload(
                    "duplicate_charge",
                    json!({
                        "workspace_id": "ws_acme01",
                        "workspace_name": "Acme Design",
                        "purchase": "sub_1SkT9aB7WZ01zgkWd3Vn7RcE",
                        "case_key": "duplicate_subscription:sub_1SkT9aB7WZ01zgkWd3Vn7RcE",
                        "case_id": "case_7436429db8a269a36424",
                    }),
                ),
            },
            Sample {
                name: "payment_failed",
                kind: "payment_failed",
                when: "S11: a renewal payment failed (one message per failed invoice). To the purchaser, else the owners.",
                recipient: "dana@acme.test",
                payload: acme_pro(
                    "payment_failed",
                    "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                    json!({ "grace_ends": 1_798_196_825 }),
                ),
            },
            Sample {
                name: "payment_failed (checkout)",
                kind: "payment_failed",
                when: "S18: a checkout's delayed payment (a bank debit) failed. To the purchaser.",
                recipient: "dana@acme.test",
                payload: acme_pro(
                    "payment_failed",
                    "cs_live_a1Qx7kB7WZ01zgkWcZ0SeatsDebit",
                    json!({ "checkout": true }),
                ),
            },
            Sample {
                name: "cancellation",
                kind: "cancellation",
                when: "S12: the subscription is canceled, unpaid or expired, or set to cancel at period end. To the owners.",
                recipient: "dana@acme.test",
                payload: acme_pro(
                    "cancellation",
                    "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                    json!({ "access_ends": 1_797_592_025 }),
                ),
            },
            Sample {
                name: "support_alert",
                kind: "support_alert",
                when: "Every held case (S5, S8, S9, S10; the flavours below for S15–S17). To ADMIT_SUPPORT_EMAIL.",
                recipient: "help@northwind.example",
                payload: payload(
                    "support_alert",
                    json!({
                        "purchase": "sub_1SkR4nB7WZ01zgkW8xQp2LmA",
                        "case_key": "missing_workspace:sub_1SkR4nB7WZ01zgkW8xQp2LmA",
                        "case_id": "case_c7d15b2c4eb9ec758631",
                        "case_actions": ["bind", "invite_purchaser", "mark_refunded", "dismiss"],
                    }),
                ),
            },
            Sample {
                name: "support_alert (duplicate_subscription, cancel_lapsed)",
                kind: "support_alert",
                when: "S15: a new subscription holds the plan while an older one is past due, unpaid or ending. To ADMIT_SUPPORT_EMAIL; the purchaser of the new one gets onboarding.",
                recipient: "help@northwind.example",
                payload: payload(
                    "support_alert",
                    json!({
                        "workspace_id": "ws_acme01",
                        "workspace_name": "Acme Design",
                        "purchase": "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "purchaser_email": "dana@acme.test",
                        "case_key": "duplicate_subscription:sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "case_id": "case_2f8e61c09d4b7a35e1c0",
                        "case_variant": "cancel_lapsed",
                        "case_actions": ["invite_purchaser", "mark_refunded", "dismiss"],
                    }),
                ),
            },
            Sample {
                name: "support_alert (unknown_price, plan kept)",
                kind: "support_alert",
                when: "S16: a live subscription changed to a price the catalog does not know; the plan in force is kept. To ADMIT_SUPPORT_EMAIL only.",
                recipient: "help@northwind.example",
                payload: payload(
                    "support_alert",
                    json!({
                        "workspace_id": "ws_acme01",
                        "workspace_name": "Acme Design",
                        "purchase": "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "case_key": "unknown_price:sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "case_id": "case_93ad0c5e7b2f41d8a6e2",
                        "case_variant": "plan_kept",
                        "case_actions": ["invite_purchaser", "mark_refunded", "dismiss"],
                    }),
                ),
            },
            Sample {
                name: "support_alert (payment_disputed)",
                kind: "support_alert",
                when: "S17: a charge of a workspace's purchase is disputed. To ADMIT_SUPPORT_EMAIL; access follows the subscription.",
                recipient: "help@northwind.example",
                payload: payload(
                    "support_alert",
                    json!({
                        "workspace_id": "ws_acme01",
                        "workspace_name": "Acme Design",
                        "purchase": "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "purchaser_email": "dana@acme.test",
                        "case_key": "payment_disputed:du_1SkV3dB7WZ01zgkW0Dispute",
                        "case_id": "case_5c1e9a7f3b2d86e40a91",
                        "case_actions": ["mark_refunded", "dismiss"],
                        "payment": {"dispute": "du_1SkV3dB7WZ01zgkW0Dispute", "charge": "ch_3SkV2aB7WZ01zgkW1Renewal",
                                    "status": "needs_response", "reason": "product_not_received",
                                    "amount": 4900, "currency": "usd"},
                    }),
                ),
            },
            Sample {
                name: "support_alert (payment_refunded)",
                kind: "support_alert",
                when: "S17: the workspace's latest paid invoice was refunded in full. To ADMIT_SUPPORT_EMAIL; access follows the subscription.",
                recipient: "help@northwind.example",
                payload: payload(
                    "support_alert",
                    json!({
                        "workspace_id": "ws_acme01",
                        "workspace_name": "Acme Design",
                        "purchase": "sub_1SkP2qB7WZ01zgkWa9Tc4HvE",
                        "case_key": "payment_refunded:ch_3SkV2aB7WZ01zgkW1Renewal",
                        "case_id": "case_e04b7d2a95c3f1186b7d",
                        "case_actions": ["mark_refunded", "dismiss"],
                        "payment": {"charge": "ch_3SkV2aB7WZ01zgkW1Renewal", "invoice": "in_1SkV2aB7WZ01zgkWRenewal",
                                    "amount": 4900, "amount_refunded": 4900, "currency": "usd"},
                    }),
                ),
            },
        ]
    }

    pub fn named(name: &str) -> Sample {
        all()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no sample named {name}"))
    }

    pub fn sample(kind: &str) -> Sample {
        all()
            .into_iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no sample for {kind}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::samples::{CTX, SIGNIN_LINK, named, sample};
    use super::*;
    use crate::mail::welcome::render_welcome;

    fn render(kind: &str) -> Rendered {
        let s = sample(kind);
        let link = (kind == "onboarding").then_some(SIGNIN_LINK);
        render_message(kind, s.recipient, &s.payload, link, &CTX).expect("renders")
    }

    /// A `none` the template printed from an absent value, ignoring the words that contain it on purpose.
    fn printed_none(part: &str) -> bool {
        part.replace("none matched", "")
            .replace("text-decoration:none", "")
            .contains("none")
    }

    fn text_snapshot(r: &Rendered) -> String {
        format!("Subject: {}\n\n{}", r.subject, r.text)
    }

    fn render_named(name: &str) -> Rendered {
        let s = named(name);
        render_message(s.kind, s.recipient, &s.payload, None, &CTX).expect("renders")
    }

    #[test]
    fn payment_failed_for_a_checkout() {
        let r = render_named("payment_failed (checkout)");
        assert!(r.text.contains("did not go through"), "{}", r.text);
        assert!(!r.text.contains("renewal"), "{}", r.text);
        insta::assert_snapshot!("payment_failed_checkout_text", text_snapshot(&r));
        insta::assert_snapshot!("payment_failed_checkout_html", r.html);
    }

    #[test]
    fn support_alerts_for_s15_to_s17() {
        for (name, snapshot, says) in [
            (
                "support_alert (duplicate_subscription, cancel_lapsed)",
                "support_alert_cancel_lapsed",
                "Cancel the lapsed subscription",
            ),
            (
                "support_alert (unknown_price, plan kept)",
                "support_alert_plan_kept",
                "keeps the plan it had",
            ),
            (
                "support_alert (payment_disputed)",
                "support_alert_payment_disputed",
                "49.00 USD",
            ),
            (
                "support_alert (payment_refunded)",
                "support_alert_payment_refunded",
                "refunded in full",
            ),
        ] {
            let r = render_named(name);
            assert!(r.text.contains(says), "{name}: {}", r.text);
            assert!(!printed_none(&r.text), "{name}: {}", r.text);
            insta::assert_snapshot!(format!("{snapshot}_text"), text_snapshot(&r));
            insta::assert_snapshot!(format!("{snapshot}_html"), r.html);
        }
        // Money cases offer no bind: the alert lists only what applies.
        let r = render_named("support_alert (payment_disputed)");
        assert!(!r.text.contains(r#""action":"bind""#), "{}", r.text);
        assert!(r.text.contains(r#""action":"mark_refunded""#), "{}", r.text);
    }

    #[test]
    fn every_template_parses() {
        check_templates().expect("templates parse");
    }

    #[test]
    fn onboarding() {
        let r = render("onboarding");
        insta::assert_snapshot!("onboarding_text", text_snapshot(&r));
        insta::assert_snapshot!("onboarding_html", r.html);
    }

    #[test]
    fn billing_contact_notice() {
        let r = render("billing_contact_notice");
        insta::assert_snapshot!("billing_contact_notice_text", text_snapshot(&r));
        insta::assert_snapshot!("billing_contact_notice_html", r.html);
    }

    #[test]
    fn access_delayed() {
        let r = render("access_delayed");
        insta::assert_snapshot!("access_delayed_text", text_snapshot(&r));
        insta::assert_snapshot!("access_delayed_html", r.html);
    }

    #[test]
    fn duplicate_charge() {
        let r = render("duplicate_charge");
        insta::assert_snapshot!("duplicate_charge_text", text_snapshot(&r));
        insta::assert_snapshot!("duplicate_charge_html", r.html);
    }

    #[test]
    fn payment_failed() {
        let r = render("payment_failed");
        insta::assert_snapshot!("payment_failed_text", text_snapshot(&r));
        insta::assert_snapshot!("payment_failed_html", r.html);
    }

    #[test]
    fn cancellation() {
        let r = render("cancellation");
        insta::assert_snapshot!("cancellation_text", text_snapshot(&r));
        insta::assert_snapshot!("cancellation_html", r.html);
    }

    #[test]
    fn support_alert() {
        let r = render("support_alert");
        insta::assert_snapshot!("support_alert_text", text_snapshot(&r));
        insta::assert_snapshot!("support_alert_html", r.html);
    }

    #[test]
    fn a_workspace_name_is_escaped_in_html_and_verbatim_in_text() {
        let mut s = sample("onboarding");
        s.payload["workspace_name"] = json!("<script>alert(1)</script>");
        let r = render_message(
            "onboarding",
            s.recipient,
            &s.payload,
            Some(SIGNIN_LINK),
            &CTX,
        )
        .expect("renders");
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            r.text
                .contains("<script>alert(1)</script> now has the Pro plan")
        );
        assert!(r.subject.contains("<script>alert(1)</script>"));
    }

    #[test]
    fn quotes_and_ampersands_are_escaped_in_html() {
        let mut s = sample("billing_contact_notice");
        s.payload["workspace_name"] = json!("Tom & Jerry's \"Lab\"");
        s.payload["administrators"] = json!(["x\"onmouseover=\"alert(1)@acme.test"]);
        let r = render_message(s.kind, s.recipient, &s.payload, None, &CTX).expect("renders");
        assert!(
            r.html.contains("Tom &amp; Jerry&#x27;s &quot;Lab&quot;"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("\"onmouseover"), "{}", r.html);
        assert!(r.text.contains("Tom & Jerry's \"Lab\""));
    }

    #[test]
    fn the_signin_link_is_an_attribute_value_in_html() {
        let r = render("onboarding");
        assert!(
            r.html.contains(
                "href=\"https://app.northwind.example/signin?workspace=ws_acme01&amp;token=st_5f3a9c2e7b1d4a60e8c7\""
            ),
            "{}",
            r.html
        );
        assert!(r.text.contains(SIGNIN_LINK));
    }

    #[test]
    fn without_a_support_email_customers_are_told_to_reply() {
        let ctx = MailContext {
            support_email: None,
            ..CTX
        };
        for kind in KINDS {
            let s = sample(kind);
            let r = render_message(kind, s.recipient, &s.payload, Some(SIGNIN_LINK), &ctx)
                .expect("renders");
            assert!(!printed_none(&r.text), "{kind}: {}", r.text);
            assert!(!r.text.contains("help@northwind.example") || kind == "support_alert");
            if kind != "support_alert" {
                assert!(r.text.contains("Reply to this email"), "{kind}: {}", r.text);
                assert!(r.html.contains("Reply to this email"), "{kind}: {}", r.html);
            }
        }
    }

    #[test]
    fn a_billing_contact_notice_without_administrators_still_says_what_to_do() {
        let mut s = sample("billing_contact_notice");
        s.payload["administrators"] = json!([]);
        let r = render_message(s.kind, s.recipient, &s.payload, None, &CTX).expect("renders");
        assert!(!r.text.contains("administered by"), "{}", r.text);
        assert!(
            r.text
                .contains("ask the person who runs Acme Design to invite you"),
            "{}",
            r.text
        );
        assert!(r.text.contains("write to help@northwind.example"));
    }

    #[test]
    fn a_bare_payload_renders_every_kind_in_neutral_words() {
        for kind in KINDS {
            let r = render_message(kind, "someone@example.test", &json!({}), None, &CTX)
                .expect("renders");
            for part in [&r.subject, &r.text, &r.html] {
                assert!(!printed_none(part), "{kind}: {part}");
                assert!(!part.contains("()"), "{kind}: {part}");
            }
            assert!(!r.subject.is_empty());
        }
        let r = render_message("cancellation", "o@example.test", &json!({}), None, &CTX)
            .expect("renders");
        assert_eq!(r.subject, "The paid plan for your workspace has ended");
        let r = render_message("onboarding", "o@example.test", &json!({}), None, &CTX)
            .expect("renders");
        assert!(r.text.contains(
            "Sign in at https://app.northwind.example with this email address: o@example.test"
        ));
    }

    #[test]
    fn an_unknown_kind_is_refused() {
        let error = render_message("newsletter", "a@example.test", &json!({}), None, &CTX)
            .expect_err("unknown");
        assert!(matches!(&error, RenderError::UnknownKind(k) if k == "newsletter"));
        assert_eq!(error.to_string(), "unknown message kind \"newsletter\"");
    }

    #[test]
    fn subjects_are_one_line() {
        for kind in KINDS {
            let mut s = sample(kind);
            s.payload["workspace_name"] = json!("Acme\r\nBcc: victim@example.test\n");
            let r = render_message(kind, s.recipient, &s.payload, None, &CTX).expect("renders");
            assert!(!r.subject.contains(['\n', '\r']), "{kind}: {:?}", r.subject);
            assert_eq!(r.subject.trim(), r.subject);
        }
    }

    #[test]
    fn dates_are_days_in_utc() {
        assert_eq!(date(1_795_000_025).expect("date"), "18 November 2026");
        // 23:59:59 UTC stays on its day whatever the machine's zone.
        assert_eq!(date(1_798_243_199).expect("date"), "25 December 2026");
        assert!(date(i64::MAX).is_err());
    }

    #[test]
    fn feature_keys_read_as_words() {
        assert_eq!(feature("sso"), "SSO");
        assert_eq!(feature("audit_log"), "Audit log");
        assert_eq!(feature("custom-domains"), "Custom domains");
        assert_eq!(words("storage_gb"), "storage gb");
    }

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/messages.md");

    fn messages_doc() -> String {
        let mut doc = String::from(
            "# Messages\n\n\
             Every email admit sends and the welcome page, as customers and support read them.\n\
             Generated from `src/mail/templates/` by the test `messages_doc_is_in_step`\n\
             (`src/mail/render.rs`) with fixed sample data; do not edit by hand. After changing a\n\
             template, run `ADMIT_BLESS_DOCS=1 cargo test --lib mail::` and review the diff.\n\n\
             Sample data: product **Northwind**, support address `help@northwind.example`,\n\
             workspace **Acme Design** on the **Pro** plan (features `audit_log`, `sso`; 25 seats).\n\
             Each email also has an HTML part with the same content (see\n\
             `src/mail/snapshots/`).\n",
        );
        for s in samples::all() {
            let link = (s.kind == "onboarding").then_some(SIGNIN_LINK);
            let r = render_message(s.kind, s.recipient, &s.payload, link, &CTX).expect("renders");
            doc.push_str(&format!(
                "\n## `{}`\n\n{}\n\n- To: `{}`\n- Subject: **{}**\n\n```text\n{}```\n",
                s.name, s.when, s.recipient, r.subject, r.text
            ));
        }
        doc.push_str(
            "\n## Welcome page\n\n\
             `GET /welcome?session_id=…`, where Stripe Checkout's success URL lands. One of six\n\
             states; below, each page's title and `<main>` (the full pages are in\n\
             `src/mail/snapshots/`). Only *Finishing* refreshes itself (every 3 seconds); for a\n\
             session admit has not heard of yet it does so for about two minutes, then shows\n\
             *Unknown*.\n",
        );
        for (name, state) in crate::mail::welcome::samples::all() {
            let html =
                render_welcome(&state, CTX.product_name, CTX.support_email).expect("renders");
            let between = |open: &str, close: &str| {
                let start = html.find(open).map(|i| i + open.len()).unwrap_or_default();
                let end = html[start..].find(close).map_or(start, |i| start + i);
                html[start..end].trim().to_owned()
            };
            doc.push_str(&format!(
                "\n### {name}\n\n- Title: **{}**\n\n```html\n{}\n```\n",
                between("<title>", "</title>"),
                between("<main>", "</main>")
            ));
        }
        doc
    }

    #[test]
    fn messages_doc_is_in_step() {
        let doc = messages_doc();
        if std::env::var_os("ADMIT_BLESS_DOCS").is_some_and(|v| v == "1") {
            std::fs::write(DOC, &doc).expect("write docs/messages.md");
            return;
        }
        let committed = std::fs::read_to_string(DOC).unwrap_or_default();
        assert!(
            committed == doc,
            "docs/messages.md is out of step with the templates: run \
             `ADMIT_BLESS_DOCS=1 cargo test --lib mail::` and commit the result"
        );
    }

    #[test]
    fn the_welcome_page_is_not_a_message_kind() {
        assert!(matches!(
            render_message("welcome", "a@example.test", &json!({}), None, &CTX),
            Err(RenderError::UnknownKind(_))
        ));
    }
}

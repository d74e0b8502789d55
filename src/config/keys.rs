//! Every configuration key and the kind of value it takes, so that what the
//! user wrote is checked before figment reads it: a value of the wrong type
//! is refused naming the variable (or the file and key) it came from, an
//! `ADMIT_*` variable that is no setting is reported with the closest one,
//! and a secret given both directly and as `_FILE` is refused.

use std::fmt;
use std::path::Path;

use figment::value::Value;

/// The kind of value a key takes, as far as its type goes (ranges and
/// formats are checked after extraction, in `Config::validate`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Any text: an address, a URL, a name, a secret.
    Text,
    /// Text or a list of text (commas in the environment).
    List,
    Bool,
    /// A whole number within these bounds (the field's Rust type); `hint`
    /// gives the range `Config::validate` accepts and an example.
    Whole {
        min: i128,
        max: i128,
        hint: &'static str,
    },
    /// One of these words, exactly.
    OneOf(&'static [&'static str]),
}

/// One configuration key: `ADMIT_<NAME>` in the environment, `name` in TOML.
#[derive(Debug)]
pub(super) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// A secret, also read from the file named by `ADMIT_<NAME>_FILE`.
    pub secret: bool,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        secret: false,
    }
}

const fn secret(name: &'static str, kind: Kind) -> Key {
    Key {
        name,
        kind,
        secret: true,
    }
}

const fn unsigned(max: u64, hint: &'static str) -> Kind {
    Kind::Whole {
        min: 0,
        max: max as i128,
        hint,
    }
}

const fn signed(hint: &'static str) -> Kind {
    Kind::Whole {
        min: i64::MIN as i128,
        max: i64::MAX as i128,
        hint,
    }
}

const U32: u64 = u32::MAX as u64;

/// Every key `Raw`, `RawMail` and `RawStripe` read (the plan catalog is
/// TOML-only and not listed). A test checks this against the defaults file.
pub(super) const KEYS: &[Key] = &[
    key("listen", Kind::Text),
    key("database_url", Kind::Text),
    secret("database_password", Kind::Text),
    key(
        "database_pool_size",
        unsigned(U32, "between 1 and 1000, e.g. 10"),
    ),
    key("migrate_on_start", Kind::Bool),
    secret("webhook_secrets", Kind::List),
    key(
        "webhook_tolerance_secs",
        unsigned(u64::MAX, "between 1 and 86400, e.g. 300"),
    ),
    secret("app_token", Kind::Text),
    secret("metrics_token", Kind::Text),
    key("log_format", Kind::OneOf(&["text", "json"])),
    key("log", Kind::Text),
    key("grace_period_days", signed("between 0 and 90, e.g. 7")),
    key("unmatched_purchase", Kind::Text),
    key(
        "outbox_settle_secs",
        unsigned(u64::MAX, "between 0 and 3600, e.g. 5"),
    ),
    key(
        "shutdown_grace_secs",
        unsigned(u64::MAX, "between 0 and 600, e.g. 10"),
    ),
    key(
        "header_timeout_secs",
        unsigned(u64::MAX, "between 1 and 300, e.g. 10"),
    ),
    key(
        "max_connections",
        unsigned(U32, "between 1 and 100000, e.g. 1024"),
    ),
    key(
        "public_rate_per_minute",
        unsigned(U32, "between 0 and 100000, e.g. 120 (0: no limit)"),
    ),
    key("process_in_background", Kind::Bool),
    key("support_email", Kind::Text),
    secret("mail_url", Kind::Text),
    key("mail_from", Kind::Text),
    key(
        "mail_max_attempts",
        unsigned(U32, "between 1 and 50, e.g. 8"),
    ),
    key("product_name", Kind::Text),
    key("public_url", Kind::Text),
    key("app_url", Kind::Text),
    key("app_home_url", Kind::Text),
    key(
        "signin_token_ttl_hours",
        signed("between 1 and 720, e.g. 72"),
    ),
    secret("stripe_api_key", Kind::Text),
    key("stripe_api_base", Kind::Text),
    key(
        "stripe_max_requests_per_sec",
        unsigned(U32, "between 1 and 100, e.g. 20"),
    ),
    key(
        "reconcile_interval_secs",
        unsigned(u64::MAX, "of seconds, e.g. 3600, or 0 for never"),
    ),
    key("stripe_mode", Kind::Text),
];

/// `ADMIT_*` names that are not settings but are admit's all the same: the
/// configuration file (read by the CLI), the runbook's shell variable for
/// admit's address, and the test suite's switch for regenerating docs.
const OTHER_VARIABLES: &[&str] = &["ADMIT_CONFIG", "ADMIT_URL", "ADMIT_BLESS_DOCS"];

/// The test suite's own variables (`ADMIT_TEST_DATABASE_URL`, …).
const TEST_PREFIX: &str = "ADMIT_TEST_";

impl Key {
    pub fn variable(&self) -> String {
        format!("ADMIT_{}", self.name.to_ascii_uppercase())
    }

    pub fn file_variable(&self) -> Option<String> {
        self.secret.then(|| format!("{}_FILE", self.variable()))
    }
}

/// The key an `ADMIT_*` variable sets, if it sets one.
pub(super) fn for_variable(variable: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.variable() == variable)
}

/// Where a value was set: an environment variable or a key of a TOML file.
#[derive(Debug, Clone)]
pub enum Setting {
    Variable(String),
    File { key: &'static str, path: String },
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Variable(name) => f.write_str(name),
            Setting::File { key, path } => write!(f, "`{key}` in {path}"),
        }
    }
}

/// What is wrong with a value, and how to set it right.
pub(super) struct Problem {
    pub problem: String,
    pub fix: String,
}

/// Checks an environment variable's text against its key's kind, as
/// figment's lossy extraction will read it.
pub(super) fn check_variable(key: &Key, variable: &str, text: &str) -> Result<(), Problem> {
    check_text(key.kind, text, variable)
}

/// Checks a value from a TOML file against its key's kind.
pub(super) fn check_file_value(key: &Key, path: &Path, value: &Value) -> Result<(), Problem> {
    let target = format!("`{}` in {}", key.name, path.display());
    match value {
        // Figment reads text as a number or a boolean where one is asked for.
        Value::String(_, text) => check_text(key.kind, text, &target),
        Value::Num(_, number) => match key.kind {
            Kind::Whole { min, max, hint } => {
                let whole = number
                    .to_i128()
                    .or_else(|| number.to_u128().and_then(|n| i128::try_from(n).ok()));
                match whole {
                    Some(n) => check_range(n, &n.to_string(), min, max, hint, &target),
                    None => Err(not_whole(&number_text(value), hint, &target)),
                }
            }
            Kind::Bool if number.to_u128_lossy().is_some_and(|n| n <= 1) => Ok(()),
            kind => Err(wrong_kind(kind, "a number", &target)),
        },
        Value::Bool(..) => match key.kind {
            Kind::Bool => Ok(()),
            kind => Err(wrong_kind(kind, "true or false", &target)),
        },
        Value::Array(_, items) => {
            let all_text = items.iter().all(|item| item.as_str().is_some());
            match key.kind {
                Kind::List if all_text => Ok(()),
                Kind::List => Err(wrong_kind(
                    key.kind,
                    "a list with items that are not text",
                    &target,
                )),
                kind => Err(wrong_kind(kind, "a list", &target)),
            }
        }
        Value::Dict(..) => Err(wrong_kind(key.kind, "a table", &target)),
        Value::Char(..) | Value::Empty(..) => Ok(()),
    }
}

fn number_text(value: &Value) -> String {
    match value {
        Value::Num(_, n) => n
            .to_f64()
            .map(|f| f.to_string())
            .unwrap_or_else(|| format!("{n:?}")),
        _ => String::new(),
    }
}

fn check_text(kind: Kind, text: &str, target: &str) -> Result<(), Problem> {
    match kind {
        Kind::Text | Kind::List => Ok(()),
        Kind::Bool => {
            let lossy = ["true", "false", "yes", "no", "on", "off", "1", "0"];
            if lossy.iter().any(|word| word.eq_ignore_ascii_case(text)) {
                Ok(())
            } else {
                Err(Problem {
                    problem: format!("{text:?} is not true or false"),
                    fix: format!("set {target} to true or false"),
                })
            }
        }
        Kind::Whole { min, max, hint } => match text.trim().parse::<i128>() {
            Ok(n) => check_range(n, &format!("{text:?}"), min, max, hint, target),
            Err(_) => Err(not_whole(&format!("{text:?}"), hint, target)),
        },
        Kind::OneOf(words) => {
            if words.contains(&text) {
                Ok(())
            } else {
                Err(Problem {
                    problem: format!("{text:?} is not {}", or_list(words)),
                    fix: format!("set {target} to {}", or_list(words)),
                })
            }
        }
    }
}

fn check_range(
    n: i128,
    shown: &str,
    min: i128,
    max: i128,
    hint: &str,
    target: &str,
) -> Result<(), Problem> {
    if n < min {
        Err(Problem {
            problem: if min == 0 {
                format!("{shown} is negative")
            } else {
                format!("{shown} is too small (at least {min})")
            },
            fix: whole_fix(hint, target),
        })
    } else if n > max {
        Err(Problem {
            problem: format!("{shown} is too large (at most {max})"),
            fix: whole_fix(hint, target),
        })
    } else {
        Ok(())
    }
}

fn not_whole(shown: &str, hint: &str, target: &str) -> Problem {
    Problem {
        problem: format!("{shown} is not a whole number"),
        fix: whole_fix(hint, target),
    }
}

fn whole_fix(hint: &str, target: &str) -> String {
    format!("set {target} to a whole number {hint}")
}

/// A TOML value of the wrong shape; its text is not echoed (it may be a secret).
fn wrong_kind(kind: Kind, found: &str, target: &str) -> Problem {
    let (expected, fix) = match kind {
        Kind::Text => ("text", format!("set {target} to text in quotes")),
        Kind::List => (
            "text or a list of text",
            format!("set {target} to a list of quoted strings, e.g. [\"a\", \"b\"]"),
        ),
        Kind::Bool => ("true or false", format!("set {target} to true or false")),
        Kind::Whole { hint, .. } => ("a whole number", whole_fix(hint, target)),
        Kind::OneOf(words) => {
            return Problem {
                problem: format!("{found} is not {}", or_list(words)),
                fix: format!("set {target} to {}", or_list(words)),
            };
        }
    };
    Problem {
        problem: format!("found {found}, expected {expected}"),
        fix,
    }
}

/// `a or b`, `a, b or c`.
fn or_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// An `ADMIT_*` variable that sets nothing: a typo, or a setting of another
/// version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariable {
    pub name: String,
    /// The known variable it is closest to, if one is close.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not an admit setting and is ignored", self.name)?;
        match &self.suggestion {
            Some(known) => write!(f, "; did you mean {known}? Fix: rename it to {known}"),
            None => write!(
                f,
                ". Fix: unset it, or see config/admit.default.toml for the settings"
            ),
        }
    }
}

/// Every variable admit reads.
fn known_variables() -> impl Iterator<Item = String> {
    KEYS.iter()
        .flat_map(|key| [Some(key.variable()), key.file_variable()])
        .flatten()
        .chain(OTHER_VARIABLES.iter().map(|name| (*name).to_owned()))
}

/// Whether admit has a use for this `ADMIT_*` variable (`name` upper-case).
pub(super) fn is_known(name: &str) -> bool {
    name.starts_with(TEST_PREFIX)
        // Refused with its own message: the catalog is TOML-only.
        || name == "ADMIT_PLANS"
        || known_variables().any(|known| known == name)
}

/// The report for a variable `is_known` refuses.
pub(super) fn unknown(name: &str) -> UnknownVariable {
    let suggestion = known_variables()
        .map(|known| (edit_distance(name, &known), known))
        .filter(|(distance, known)| *distance <= 3 && *distance < known.len() / 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known);
    UnknownVariable {
        name: name.to_owned(),
        suggestion,
    }
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("ab", "abc"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            edit_distance("ADMIT_GRACE_PERIODS_DAYS", "ADMIT_GRACE_PERIOD_DAYS"),
            1
        );
    }

    #[test]
    fn an_unknown_variable_gets_the_closest_known_one() {
        assert_eq!(
            unknown("ADMIT_GRACE_PERIODS_DAYS").suggestion.as_deref(),
            Some("ADMIT_GRACE_PERIOD_DAYS")
        );
        assert_eq!(
            unknown("ADMIT_APP_TOKN_FILE").suggestion.as_deref(),
            Some("ADMIT_APP_TOKEN_FILE")
        );
        assert_eq!(
            unknown("ADMIT_LOGFORMAT").suggestion.as_deref(),
            Some("ADMIT_LOG_FORMAT")
        );
        assert_eq!(unknown("ADMIT_SOMETHING_ELSE_ENTIRELY").suggestion, None);
        assert_eq!(unknown("ADMIT_X").suggestion, None, "too short to guess");
        let message = unknown("ADMIT_WEBHOOK_SECRET").to_string();
        assert!(
            message.contains("ADMIT_WEBHOOK_SECRET is not an admit setting")
                && message.contains("did you mean ADMIT_WEBHOOK_SECRETS?"),
            "{message}"
        );
    }

    #[test]
    fn known_variables_include_file_variants_and_test_variables() {
        for name in [
            "ADMIT_LISTEN",
            "ADMIT_APP_TOKEN_FILE",
            "ADMIT_METRICS_TOKEN_FILE",
            "ADMIT_DATABASE_PASSWORD_FILE",
            "ADMIT_CONFIG",
            "ADMIT_TEST_DATABASE_URL",
            "ADMIT_TEST_ANYTHING",
        ] {
            assert!(is_known(name), "{name}");
        }
        for name in [
            "ADMIT_LISTEN_FILE",
            "ADMIT_GRACE_PERIODS_DAYS",
            "ADMIT_TEST",
        ] {
            assert!(!is_known(name), "{name}");
        }
    }

    #[test]
    fn or_list_reads_as_a_sentence() {
        assert_eq!(or_list(&["text", "json"]), "text or json");
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
        assert_eq!(or_list(&["a"]), "a");
    }
}

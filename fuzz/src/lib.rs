//! The fuzz targets' bodies, one function per target; `src/bin/*.rs` hand
//! them AFL's input. Each asserts only what must hold for any input: no
//! panic, and invariants cheap enough to check on every execution. An error
//! returned for a malformed input is the code working, not a finding.

use std::fmt::Write as _;
use std::path::PathBuf;

use admit::config::{Config, Sources, redact_url};
use admit_core::Timestamp;
use admit_stripe::signature::sign;
use admit_stripe::{
    EventEnvelope, ParseError, SignatureError, billing_event, read_event, verify_signature,
};
use serde_json::Value;

/// The configured secret, and a second one as during a rotation.
const SECRET: &str = "whsec_fuzz_0123456789abcdef";
const ROTATED: &str = "whsec_fuzz_rotated_secret";
/// "Now" for every check: the seeds' headers are signed at this time.
pub const NOW: i64 = 1_795_000_000;
const TOLERANCE: u64 = 300;

/// `signature`: the first line of the input is the `Stripe-Signature`
/// header, the rest the body.
pub fn signature(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header);
    let now = Timestamp::from_unix(NOW);
    let lenient = verify_signature(&header, body, &[SECRET], now, None);
    let strict = verify_signature(&header, body, &[SECRET], now, Some(TOLERANCE));

    // The tolerance only ever turns a pass into `OutsideTolerance`.
    match (&lenient, &strict) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(
                a.abs_diff(now) <= TOLERANCE,
                "{a:?} passed outside tolerance"
            );
        }
        (Ok(a), Err(SignatureError::OutsideTolerance { timestamp, .. })) => {
            assert_eq!(a.unix(), *timestamp);
            assert!(a.abs_diff(now) > TOLERANCE);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("tolerance None gave {a:?}, Some({TOLERANCE}) gave {b:?}"),
    }

    // A pass means the header carries the signature Stripe would have made
    // for that timestamp and body: nothing else verifies.
    if let Ok(t) = lenient {
        let expected = sign(body, SECRET, t);
        let (_, v1) = expected.split_once(",v1=").expect("sign writes t=…,v1=…");
        assert!(
            header.contains(&format!("v1={v1}")),
            "{header:?} verified without the expected v1"
        );
    }

    // A second configured secret never turns a pass into a failure, nor a
    // malformed header into anything else.
    let rotated = verify_signature(&header, body, &[ROTATED, SECRET], now, None);
    match (&lenient, &rotated) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(_), Err(e)) => panic!("adding a secret broke a pass: {e:?}"),
        (Err(SignatureError::HeaderInvalid(a)), b) => {
            assert_eq!(b, &Err(SignatureError::HeaderInvalid(a)));
        }
        _ => {}
    }

    // What `sign` makes for this body, at a time taken from the input,
    // verifies with no tolerance at all.
    let t = Timestamp::from_unix(i64::from(u32::from_le_bytes(std::array::from_fn(|i| {
        body.get(i).copied().unwrap_or(0)
    }))));
    let header = sign(body, SECRET, t);
    assert_eq!(
        verify_signature(&header, body, &[SECRET], t, Some(0)),
        Ok(t),
        "{header:?} does not verify"
    );
}

/// `envelope`: the input is a webhook body.
pub fn envelope(data: &[u8]) {
    let parsed = EventEnvelope::parse(data);
    match serde_json::from_slice::<Value>(data) {
        Err(_) => assert!(matches!(parsed, Err(ParseError::NotJson(_))), "{parsed:?}"),
        Ok(value) => {
            let from_json = EventEnvelope::from_json(&value);
            assert_eq!(describe(&parsed), describe(&from_json));
        }
    }
    if let Ok(envelope) = parsed {
        assert!(envelope.id.as_str().starts_with("evt_"), "{envelope:?}");
        assert!(envelope.created.unix() > 0, "{envelope:?}");
        let plausible =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_';
        assert!(
            !envelope.event_type.is_empty()
                && envelope.event_type.len() <= 128
                && envelope.event_type.bytes().all(plausible),
            "{envelope:?}"
        );
        // Debug is what a failed assertion shows; it must not panic either.
        let _ = format!("{envelope:?}");
    }
}

/// `billing_event`: the input is a webhook body; the two readers, which
/// parse the body once and twice, agree.
pub fn billing_event_target(data: &[u8]) {
    let read = read_event(data);
    let billing = billing_event(data);
    let envelope = EventEnvelope::parse(data);
    match read {
        Err(error) => {
            assert_eq!(describe(&Err::<(), _>(&error)), describe(&envelope));
            assert_eq!(
                error.to_string(),
                billing.expect_err("read_event failed").to_string()
            );
        }
        Ok((read_envelope, read_billing)) => {
            assert_eq!(Some(&read_envelope), envelope.as_ref().ok());
            match (&read_billing, &billing) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("read_event gave {a:?}, billing_event gave {b:?}"),
            }
            if let Ok(Some(event)) = read_billing {
                assert_eq!(event.id, read_envelope.id);
                assert_eq!(event.created, read_envelope.created);
                let _ = format!("{event:?}");
            }
        }
    }
}

/// A result's shape for comparison: `ParseError` has no `PartialEq`.
fn describe<T: std::fmt::Debug, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(error) => format!("err {error}"),
    }
}

/// Where the `config` target writes the files it hands the loader.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A folder of this process's own under the temporary directory
    /// (`scripts/fuzz` points `TMPDIR` into `fuzz/target` and clears it).
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("admit-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("the scratch folder is writable");
        path
    }
}

/// Inputs of the `config` target beyond this are skipped: an environment
/// and a file of that size are far beyond any real one.
const CONFIG_MAX_INPUT: usize = 16 * 1024;
/// Environments beyond this skip `Sources::unknown_variables`.
const UNKNOWN_VARIABLES_MAX_INPUT: usize = 1024;
/// `…_FILE` variables beyond this name a missing file.
const SECRET_FILES: usize = 8;

/// Put into every secret the input leaves unset, and looked for where no
/// secret may show: the configuration's `Debug` and its error messages.
const MARKER: &str = "Zq9SECRETMARK";

/// The secrets, each with a value the loader accepts that holds [`MARKER`].
const MARKED: &[(&str, &str)] = &[
    ("ADMIT_APP_TOKEN", "app-Zq9SECRETMARK-0123456789"),
    ("ADMIT_METRICS_TOKEN", "metrics-Zq9SECRETMARK-0123456789"),
    ("ADMIT_WEBHOOK_SECRETS", "whsec_Zq9SECRETMARK"),
    ("ADMIT_STRIPE_API_KEY", "sk_test_Zq9SECRETMARK"),
];

/// `config`: lines of `NAME=VALUE` environment variables (`ADMIT_` is added
/// to a name without it), then optionally a line `---` and the TOML file.
/// The value of a `…_FILE` variable is the content of the file it names
/// (an empty value names a file that does not exist).
pub fn config(scratch: &Scratch, data: &[u8]) {
    if data.len() > CONFIG_MAX_INPUT {
        return;
    }
    let (env_part, file) = if let Some(rest) = data.strip_prefix(b"---\n") {
        (&[][..], Some(rest))
    } else {
        match data.windows(5).position(|w| w == b"\n---\n") {
            Some(at) => (&data[..at], Some(&data[at + 5..])),
            None => (data, None),
        }
    };
    let mut env = Vec::new();
    let mut files = 0;
    for line in String::from_utf8_lossy(env_part).lines() {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let name = if name.starts_with("ADMIT_") {
            name.to_owned()
        } else {
            format!("ADMIT_{name}")
        };
        // The loader reads the file such a variable names, whatever its
        // case; a fuzzed path could name a FIFO or a device.
        let value = if name.to_ascii_uppercase().ends_with("_FILE") {
            files += 1;
            let path = if value.is_empty() || files > SECRET_FILES {
                scratch.dir.join("missing")
            } else {
                scratch.write(&format!("secret-{files}"), value.as_bytes())
            };
            path.to_string_lossy().into_owned()
        } else {
            value.to_owned()
        };
        env.push((name, value));
    }
    // Inputs that hold the marker themselves cannot tell a leak.
    let marked = !String::from_utf8_lossy(data).contains(MARKER);
    if marked {
        for (name, value) in MARKED {
            let file_name = format!("{name}_FILE");
            let set = env
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(&file_name));
            if !set {
                env.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
    }
    let sources = Sources {
        file: file.map(|toml| scratch.write("admit.toml", toml)),
        env,
    };

    // The suggestion for an unknown variable costs its name's length times
    // every known name's: microseconds for a real environment, but a quarter
    // of a second in this build for a hundred long fuzzed names.
    if env_part.len() <= UNKNOWN_VARIABLES_MAX_INPUT {
        let _ = sources.unknown_variables();
    }
    match Config::load(&sources) {
        Ok(config) => {
            assert!(!config.webhook_secrets.is_empty());
            let _ = config.database_options();
            let _ = config.development_notice();
            let _ = redact_url(&config.database_url);
            let shown = format!("{config:?}");
            assert!(
                !marked || !shown.contains(MARKER),
                "a secret in Debug: {shown}"
            );
        }
        Err(error) => {
            // The message and its causes, as the CLI prints them.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                let _ = write!(message, ": {cause}");
                source = cause.source();
            }
            assert!(!message.is_empty());
            assert!(
                !marked || !message.contains(MARKER),
                "a secret in an error: {message}"
            );
        }
    }
}

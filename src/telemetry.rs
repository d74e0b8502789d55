//! Log set-up. Rules (see ARCHITECTURE.md): a message plus fields, logged once
//! at the boundary; never a secret, a request body or an email address.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `filter` is `Config::log`, which `Config::load` has parsed already (a
/// filter that does not parse stops start-up there, naming `ADMIT_LOG`), or
/// a fixed one of the CLI's.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The error and its causes on one line; a cause its error already quotes
/// (lettre shows the server's reply in both) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

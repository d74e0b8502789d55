//! How admit reaches a PostgreSQL server: the password from the
//! environment or a file (never shown), `sslmode` honoured. Only on
//! PostgreSQL (the pass of `scripts/test` with `ADMIT_TEST_DATABASE_URL`).

use std::path::Path;
use std::process::Command;

use crate::helpers::{on_postgres, prepare_database};

/// `admit migrate` against `url` with `env`: (exit code, stdout + stderr).
fn migrate(url: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_admit"));
    command
        .arg("migrate")
        .env_remove("ADMIT_DATABASE_PASSWORD")
        .env_remove("ADMIT_DATABASE_PASSWORD_FILE")
        .env("ADMIT_DATABASE_URL", url)
        .env(
            "ADMIT_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/admit-test.toml"),
        )
        .env("ADMIT_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("admit runs");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The URL without its password, and the password.
fn without_password(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("the test URL names its user");
    let (user, password) = userinfo.split_once(':').expect("and its password");
    (format!("{scheme}://{user}@{host}"), password.to_owned())
}

#[tokio::test]
async fn the_password_comes_from_the_environment_or_a_file_and_is_never_shown() {
    if !on_postgres() {
        eprintln!("a PostgreSQL connection's settings; this pass runs on SQLite");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let (url, password) = without_password(&prepare_database(dir.path()).await);

    let (code, output) = migrate(&url, &[]);
    assert_ne!(code, 0, "no password, no connection: {output}");
    assert!(output.contains("cannot open the database"), "{output}");

    let file = dir.path().join("password");
    std::fs::write(&file, format!("{password}\n")).expect("write");
    let (code, output) = migrate(
        &url,
        &[("ADMIT_DATABASE_PASSWORD_FILE", file.to_str().expect("utf8"))],
    );
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(&password), "{output}");

    let (code, output) = migrate(&url, &[("ADMIT_DATABASE_PASSWORD", &password)]);
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(&password), "{output}");

    let wrong = "not-the-password-4417";
    let (code, output) = migrate(&url, &[("ADMIT_DATABASE_PASSWORD", wrong)]);
    assert_ne!(code, 0, "{output}");
    assert!(!output.contains(wrong), "{output}");
    // One in the URL is shown redacted, whatever happens.
    let (scheme, rest) = url.split_once("://").expect("URL");
    let (user, host) = rest.split_once('@').expect("user");
    let (code, output) = migrate(&format!("{scheme}://{user}:{wrong}@{host}"), &[]);
    assert_ne!(code, 0, "{output}");
    assert!(!output.contains(wrong), "{output}");
}

#[tokio::test]
async fn sslmode_require_refuses_a_server_without_tls() {
    if !on_postgres() {
        eprintln!("a PostgreSQL connection's settings; this pass runs on SQLite");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = prepare_database(dir.path()).await;
    // The test server offers no TLS: `prefer` falls back, `require` refuses.
    let (code, output) = migrate(&format!("{url}?sslmode=prefer"), &[]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = migrate(&format!("{url}?sslmode=require"), &[]);
    assert_ne!(code, 0, "{output}");
    assert!(
        output.to_lowercase().contains("tls") || output.to_lowercase().contains("ssl"),
        "{output}"
    );
}

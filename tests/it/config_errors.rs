//! Configuration mistakes as a user meets them (issue 14, item 6): the real
//! binary, a clean environment, `admit migrate`. Each stops start-up (or, for
//! an unknown variable, warns) naming the variable and the fix, once.

use std::process::Command;

/// `admit migrate` in a fresh folder with only `env` set: (exit code, stderr).
fn migrate(env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(env!("CARGO_BIN_EXE_admit"))
        .arg("migrate")
        .env_clear()
        .current_dir(dir.path())
        .env(
            "ADMIT_DATABASE_URL",
            format!("sqlite://{}/a.db", dir.path().display()),
        )
        .envs(env.iter().copied())
        .output()
        .expect("the admit binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Start-up stops with exit 1 and one line `admit: …` that names the
/// variable, says what is wrong (`problem` starts it) and ends with the fix,
/// once.
fn assert_refused(env: &[(&str, &str)], variable: &str, problem: &str, fix: &str) {
    let (code, stderr) = migrate(env);
    assert_eq!(code, 1, "{stderr}");
    let start = format!("admit: invalid configuration {variable}: {problem}");
    assert!(
        stderr.starts_with(&start),
        "expected {start:?} in:\n{stderr}"
    );
    let end = format!(". Fix: {fix}\n");
    assert!(stderr.ends_with(&end), "expected {end:?} in:\n{stderr}");
    assert_eq!(stderr.matches(problem).count(), 1, "once:\n{stderr}");
    assert_eq!(stderr.matches("Fix:").count(), 1, "once:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
}

#[test]
fn a_whole_number_that_is_not_one_names_the_variable_and_the_fix() {
    assert_refused(
        &[("ADMIT_GRACE_PERIOD_DAYS", "abc")],
        "ADMIT_GRACE_PERIOD_DAYS",
        "\"abc\" is not a whole number",
        "set ADMIT_GRACE_PERIOD_DAYS to a whole number between 0 and 90, e.g. 7",
    );
}

#[test]
fn a_log_format_that_is_not_one_names_the_variable_and_the_fix() {
    assert_refused(
        &[("ADMIT_LOG_FORMAT", "xml")],
        "ADMIT_LOG_FORMAT",
        "\"xml\" is not text or json",
        "set ADMIT_LOG_FORMAT to text or json",
    );
}

#[test]
fn a_boolean_that_is_not_one_names_the_variable_and_the_fix() {
    assert_refused(
        &[("ADMIT_MIGRATE_ON_START", "maybe")],
        "ADMIT_MIGRATE_ON_START",
        "\"maybe\" is not true or false",
        "set ADMIT_MIGRATE_ON_START to true or false",
    );
}

#[test]
fn a_negative_number_of_seconds_names_the_variable_and_the_fix() {
    assert_refused(
        &[("ADMIT_OUTBOX_SETTLE_SECS", "-1")],
        "ADMIT_OUTBOX_SETTLE_SECS",
        "\"-1\" is negative",
        "set ADMIT_OUTBOX_SETTLE_SECS to a whole number between 0 and 3600, e.g. 5",
    );
}

#[test]
fn a_log_filter_that_does_not_parse_names_the_variable_and_the_fix() {
    assert_refused(
        &[("ADMIT_LOG", "admit=verbose")],
        "ADMIT_LOG",
        "\"admit=verbose\" is not a log filter (error parsing level filter",
        "set ADMIT_LOG to a level (error, warn, info, debug or trace) or to comma-separated directives such as info or admit=debug,sqlx=warn",
    );
}

#[test]
fn a_token_and_a_token_file_both_set_stop_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    std::fs::write(&file, "token-from-a-file-0123456\n").expect("write");
    let token = "token-from-the-environment-0123";
    let (code, stderr) = migrate(&[
        ("ADMIT_APP_TOKEN", token),
        ("ADMIT_APP_TOKEN_FILE", file.to_str().expect("utf8")),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let line = "admit: ADMIT_APP_TOKEN and ADMIT_APP_TOKEN_FILE are both set. Fix: unset one of them: ADMIT_APP_TOKEN_FILE to use ADMIT_APP_TOKEN, or ADMIT_APP_TOKEN to read the secret from the file\n";
    assert_eq!(stderr, line);
    assert!(!stderr.contains(token), "no secret shown");
}

#[test]
fn an_unknown_variable_is_a_warning_naming_the_closest_known_one() {
    let (code, stderr) = migrate(&[
        ("ADMIT_GRACE_PERIODS_DAYS", "3"),
        // The tests' own variables are not admit's.
        ("ADMIT_TEST_SOMETHING", "1"),
    ]);
    assert_eq!(code, 0, "a warning, not an error: {stderr}");
    let warning = "ADMIT_GRACE_PERIODS_DAYS is not an admit setting and is ignored; did you mean ADMIT_GRACE_PERIOD_DAYS? Fix: rename it to ADMIT_GRACE_PERIOD_DAYS";
    assert_eq!(stderr.matches(warning).count(), 1, "once:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains(warning)),
        "{stderr}"
    );
    assert!(!stderr.contains("ADMIT_TEST_SOMETHING"), "{stderr}");
    assert!(stderr.contains("database is migrated"), "{stderr}");
}

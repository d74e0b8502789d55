//! The one integration-test binary: admit started for real on a random port
//! with a fresh database per test, driven over HTTP. The database is SQLite
//! unless `ADMIT_TEST_DATABASE_URL` names a PostgreSQL server (see
//! `helpers::prepare_database`).

mod helpers;

mod checkout;
mod cli;
mod config_errors;
mod console;
mod crash_safety;
mod events;
mod fixtures;
mod hardening;
mod history;
mod instances;
mod lists;
mod localstripe;
mod log_safety;
mod mail;
mod openapi;
mod ops;
mod postgres;
mod processors;
mod provisioning;
mod readiness_probe;
mod release;
mod restart;
mod scenarios;
mod semantics;
mod shutdown;
mod signin;
mod simulate;
mod smtp;
mod stripe_localstripe;
mod stripe_story;
mod webhooks;
mod welcome;
mod workspaces;

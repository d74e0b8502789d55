//! admit, the service: configuration, the HTTP server and the CLI around the
//! pure core (`admit-core`), Stripe wire code (`admit-stripe`) and storage
//! (`admit-store`). See ARCHITECTURE.md for who owns what.

pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod inbox;
pub mod mail;
pub mod metrics;
pub mod operators;
pub mod provision;
pub mod qa;
pub mod readiness;
pub mod server;
pub mod signin;
pub mod simulate;
pub mod startup;
pub mod stripe_sync;
pub mod telemetry;
pub mod verify;
pub mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use startup::App;

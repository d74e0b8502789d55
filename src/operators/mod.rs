//! Console operators: their credentials and `admit operator`.

mod command;
mod credentials;

pub use command::{OperatorCommand, run};
pub use credentials::{
    CredentialError, MIN_PASSWORD_CHARS, SETUP_LINK_SECS, check_name, check_password,
    hash_password, hash_token, prepare, random_token, verify_password,
};

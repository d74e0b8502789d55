//! Console operators' credentials: argon2 password hashes, name and password
//! rules, and the one-time setup link `admit operator add` prints. Shared by
//! the CLI and the console's sign-in.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::Digest;

/// How long a setup link may be redeemed.
pub const SETUP_LINK_SECS: i64 = 24 * 60 * 60;
pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error(
        "an operator name is 1 to 64 characters: lower-case letters, digits, '.', '_', '-' or '@'"
    )]
    NameInvalid,
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("the password must be at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong,
    #[error("the two passwords differ")]
    PasswordsDiffer,
}

/// 32 random bytes, hex: a session, CSRF or setup token.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// SHA-256 of a token, hex: all the store keeps of sessions and setup links.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// An operator's name as typed, checked.
pub fn check_name(raw: &str) -> Result<&str, CredentialError> {
    let valid = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if valid {
        Ok(raw)
    } else {
        Err(CredentialError::NameInvalid)
    }
}

pub fn check_password(password: &str) -> Result<(), CredentialError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CredentialError::PasswordTooLong);
    }
    Ok(())
}

/// The argon2id PHC string of a password (argon2's default parameters).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// A hash no password matches, verified when the name is unknown so that a
/// wrong name and a wrong password take the same time.
static DECOY: LazyLock<Option<String>> =
    LazyLock::new(|| hash_password("admit decoy password, never set").ok());

/// Builds the decoy hash now (start-up) rather than in the first sign-in
/// with an unknown name, which would otherwise take longer than the rest.
pub fn prepare() {
    std::sync::LazyLock::force(&DECOY);
}

/// Whether `password` matches `hash`; `None` (no such operator, or no
/// password set yet) never matches but costs the same.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let (hash, real) = match hash {
        Some(hash) => (hash, true),
        None => match DECOY.as_deref() {
            Some(decoy) => (decoy, false),
            None => return false,
        },
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_and_nothing_else() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("correct horse batterx", Some(&hash)));
        assert!(!verify_password("correct horse battery", None));
        assert!(!verify_password("admit decoy password, never set", None));
        assert!(!verify_password("x", Some("not a hash")));
        assert_ne!(hash, hash_password("correct horse battery").expect("hash"));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert_eq!(check_name("sam.ops-1@acme"), Ok("sam.ops-1@acme"));
        for bad in ["", "Sam", "sam ops", "sam<", &"a".repeat(65)] {
            assert_eq!(
                check_name(bad),
                Err(CredentialError::NameInvalid),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_password("short"),
            Err(CredentialError::PasswordTooShort)
        );
        assert_eq!(check_password("twelve chars"), Ok(()));
        assert_eq!(
            check_password(&"x".repeat(1025)),
            Err(CredentialError::PasswordTooLong)
        );
    }
}

//! One-time sign-in tokens: minted when an onboarding email is sent, redeemed
//! by the product's app. Only the hash is stored; the token itself exists in
//! the email and nowhere else (never in a log).

use sha2::{Digest, Sha256};

/// A fresh token and the hash to store: 32 random bytes as lowercase hex,
/// and the lowercase hex SHA-256 of that text.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = hex::encode(bytes);
    let hash = hash_token(&token);
    Ok((token, hash))
}

/// What is stored for `token` and looked up when it is redeemed.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_lowercase_hex_digits_and_differ() {
        let (a, _) = new_token().expect("randomness");
        let (b, _) = new_token().expect("randomness");
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_token_text_and_not_the_token() {
        let (token, hash) = new_token().expect("randomness");
        assert_eq!(hash, hash_token(&token));
        assert_ne!(hash, token);
        assert_eq!(hash.len(), 64);
        // A known vector: SHA-256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

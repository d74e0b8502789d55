//! `Stripe-Signature` verification.
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`; the signature is
//! HMAC-SHA256 keyed by the whole secret string (including `whsec_`, not
//! base64-decoded) over `"<t>." + raw body`. Any `v1` matching any configured
//! secret passes (Stripe sends several during secret rotation, and we accept
//! several secrets for the same reason). Comparison is constant-time.

use admit_core::Timestamp;
use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bounds the work an attacker can ask for with one request.
const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing or malformed: {0}")]
    HeaderInvalid(&'static str),
    #[error("no signature in the Stripe-Signature header matches a configured webhook secret")]
    Mismatch,
    #[error(
        "the signature timestamp {timestamp} is more than {tolerance_secs} s away from now ({now})"
    )]
    OutsideTolerance {
        timestamp: i64,
        now: i64,
        tolerance_secs: u64,
    },
}

struct ParsedHeader {
    timestamp: i64,
    signatures: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::HeaderInvalid(
                "expected comma-separated key=value pairs",
            ))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::HeaderInvalid("more than one timestamp `t`"));
                }
                // Digits only: `+12` or ` 12` would parse but were never signed that way.
                let t = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<i64>().ok())
                    .flatten()
                    .ok_or(SignatureError::HeaderInvalid(
                        "timestamp `t` is not an integer",
                    ))?;
                timestamp = Some(t);
            }
            "v1" => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::HeaderInvalid("too many `v1` signatures"));
                }
                // Lower-case only, as Stripe writes it: the SDKs compare hex strings.
                if value.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(SignatureError::HeaderInvalid(
                        "a `v1` signature is not 64 hexadecimal digits",
                    ));
                }
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(value, &mut bytes).map_err(|_| {
                    SignatureError::HeaderInvalid("a `v1` signature is not 64 hexadecimal digits")
                })?;
                signatures.push(bytes);
            }
            // Other schemes (`v0` test-mode signatures, future ones) are not trusted.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::HeaderInvalid("no timestamp `t`"))?;
    if signatures.is_empty() {
        return Err(SignatureError::HeaderInvalid("no `v1` signature"));
    }
    Ok(ParsedHeader {
        timestamp,
        signatures,
    })
}

/// Verifies `header` for `body` against any of `secrets`.
///
/// `tolerance_secs = None` skips the timestamp check (for replaying stored
/// fixtures only). Returns the signed timestamp.
pub fn verify_signature<S: AsRef<[u8]>>(
    header: &str,
    body: &[u8],
    secrets: &[S],
    now: Timestamp,
    tolerance_secs: Option<u64>,
) -> Result<Timestamp, SignatureError> {
    let parsed = parse_header(header)?;
    let signed_prefix = format!("{}.", parsed.timestamp);
    let matched = secrets.iter().any(|secret| {
        let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_ref()) else {
            return false;
        };
        mac.update(signed_prefix.as_bytes());
        mac.update(body);
        let expected = mac.finalize();
        // `CtOutput`'s equality is constant-time; `|` (not `||`) keeps the
        // number of comparisons independent of which one matched.
        parsed.signatures.iter().fold(false, |any, candidate| {
            any | (expected == CtOutput::new((*candidate).into()))
        })
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let timestamp = Timestamp::from_unix(parsed.timestamp);
    if let Some(tolerance_secs) = tolerance_secs
        && timestamp.abs_diff(now) > tolerance_secs
    {
        return Err(SignatureError::OutsideTolerance {
            timestamp: parsed.timestamp,
            now: now.unix(),
            tolerance_secs,
        });
    }
    Ok(timestamp)
}

/// Builds a header the way Stripe does; for tests, the `simulate` command and
/// documentation examples.
pub fn sign(body: &[u8], secret: &str, timestamp: Timestamp) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{}.", timestamp.unix()).as_bytes());
    mac.update(body);
    format!(
        "t={},v1={}",
        timestamp.unix(),
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Independent vectors, computed with Python's standard library, not with
    // this crate:
    //   python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_demo_secret",
    //     b"1700000000." + b"{\"id\":\"evt_demo\",\"object\":\"event\"}",
    //     hashlib.sha256).hexdigest())'
    const DEMO_SECRET: &str = "whsec_demo_secret";
    const DEMO_BODY: &[u8] = br#"{"id":"evt_demo","object":"event"}"#;
    const DEMO_T: i64 = 1_700_000_000;
    const DEMO_V1: &str = "f6f3a61070b7b43d7c259afa22cb8388c7e82b9b1ee3b2aba5b0111b2a5cbc8e";
    // The same body signed with a second secret, for rotation:
    //   … hmac.new(b"whsec_rotated_secret", …) …
    const ROTATED_SECRET: &str = "whsec_rotated_secret";
    const ROTATED_V1: &str = "b3626fcfdc50862adb53914cd8fc28e31daf6fc40a2804b98c5dc10557acf0ba";

    fn at(t: i64) -> Timestamp {
        Timestamp::from_unix(t)
    }

    fn demo_header() -> String {
        format!("t={DEMO_T},v1={DEMO_V1}")
    }

    #[test]
    fn python_vector_verifies() {
        let got = verify_signature(
            &demo_header(),
            DEMO_BODY,
            &[DEMO_SECRET],
            at(DEMO_T),
            Some(300),
        );
        assert_eq!(got, Ok(at(DEMO_T)));
    }

    #[test]
    fn sign_matches_the_python_vector() {
        assert_eq!(sign(DEMO_BODY, DEMO_SECRET, at(DEMO_T)), demo_header());
        assert_eq!(
            sign(DEMO_BODY, ROTATED_SECRET, at(DEMO_T)),
            format!("t={DEMO_T},v1={ROTATED_V1}")
        );
    }

    #[test]
    fn any_configured_secret_may_match() {
        let header = format!("t={DEMO_T},v1={ROTATED_V1}");
        let secrets = [DEMO_SECRET, ROTATED_SECRET];
        assert!(verify_signature(&header, DEMO_BODY, &secrets, at(DEMO_T), Some(300)).is_ok());
        assert_eq!(
            verify_signature(&header, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_v1_entry_may_match_and_other_schemes_are_ignored() {
        let wrong = "0".repeat(64);
        let header = format!("t={DEMO_T},v0={DEMO_V1},v1={wrong},v1={DEMO_V1}");
        assert!(
            verify_signature(&header, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)).is_ok()
        );
        // A valid signature under `v0` alone does not count.
        let only_v0 = format!("t={DEMO_T},v0={DEMO_V1},v1={wrong}");
        assert_eq!(
            verify_signature(&only_v0, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tolerance_edges() {
        let header = demo_header();
        let check =
            |now: i64| verify_signature(&header, DEMO_BODY, &[DEMO_SECRET], at(now), Some(300));
        assert!(
            check(DEMO_T + 300).is_ok(),
            "exactly at the tolerance passes"
        );
        assert!(
            check(DEMO_T - 300).is_ok(),
            "clock skew the other way passes too"
        );
        assert_eq!(
            check(DEMO_T + 301),
            Err(SignatureError::OutsideTolerance {
                timestamp: DEMO_T,
                now: DEMO_T + 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            check(DEMO_T - 301),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        // Without a tolerance an old fixture still verifies.
        assert!(
            verify_signature(
                &header,
                DEMO_BODY,
                &[DEMO_SECRET],
                at(DEMO_T + 86_400 * 365),
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn a_stale_timestamp_with_a_wrong_signature_is_a_mismatch() {
        let header = format!("t={},v1={DEMO_V1}", DEMO_T - 1000);
        assert_eq!(
            verify_signature(&header, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        for header in [
            "",
            "garbage",
            "t=abc,v1=00",
            "v1=00",
            &format!("t={DEMO_T}"),
            &format!("t={DEMO_T},v1=xyz"),
            &format!("t=1,t=2,v1={DEMO_V1}"),
        ] {
            assert!(
                matches!(
                    verify_signature(header, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)),
                    Err(SignatureError::HeaderInvalid(_))
                ),
                "{header:?} should be a header error"
            );
        }
        let many = std::iter::repeat_n(format!("v1={DEMO_V1}"), MAX_SIGNATURES + 1)
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            verify_signature(
                &format!("t={DEMO_T},{many}"),
                DEMO_BODY,
                &[DEMO_SECRET],
                at(DEMO_T),
                Some(300)
            ),
            Err(SignatureError::HeaderInvalid(_))
        ));
    }

    #[test]
    fn no_secrets_means_nothing_verifies() {
        let none: [&str; 0] = [];
        assert_eq!(
            verify_signature(&demo_header(), DEMO_BODY, &none, at(DEMO_T), Some(300)),
            Err(SignatureError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn flipping_any_body_byte_fails(index in 0usize..DEMO_BODY.len(), flip in 1u8..=255) {
            let mut body = DEMO_BODY.to_vec();
            body[index] ^= flip;
            prop_assert!(verify_signature(&demo_header(), &body, &[DEMO_SECRET], at(DEMO_T), Some(300)).is_err());
        }

        #[test]
        fn flipping_any_header_byte_fails(index in 0usize..demo_header().len(), flip in 1u8..=255) {
            let mut header = demo_header().into_bytes();
            header[index] ^= flip;
            // A flipped byte may make the header invalid UTF-8; then it never reaches us as &str.
            if let Ok(header) = String::from_utf8(header) {
                prop_assert!(verify_signature(&header, DEMO_BODY, &[DEMO_SECRET], at(DEMO_T), Some(300)).is_err());
            }
        }

        #[test]
        fn signing_and_verifying_round_trips(body in proptest::collection::vec(any::<u8>(), 0..512), t in 0i64..4_000_000_000) {
            let header = sign(&body, DEMO_SECRET, at(t));
            prop_assert_eq!(verify_signature(&header, &body, &[DEMO_SECRET], at(t), Some(0)), Ok(at(t)));
        }
    }
}

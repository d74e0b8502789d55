//! Raw bodies as the inbox keeps them: compressed (an LZ4 block with its
//! length first) when that makes them smaller, as received otherwise. Byte
//! for byte the same when read back; Stripe's JSON shrinks to about half.

use crate::StoreError;

/// How a stored body is encoded (`stripe_event_bodies.encoding`).
pub(crate) const IDENTITY: &str = "identity";
const LZ4: &str = "lz4";

/// A body as stored, with its encoding.
pub(crate) fn pack(body: &[u8]) -> (Vec<u8>, &'static str) {
    let packed = lz4_flex::compress_prepend_size(body);
    if packed.len() < body.len() {
        (packed, LZ4)
    } else {
        (body.to_vec(), IDENTITY)
    }
}

/// Larger than any body ingress accepts: a damaged length prefix must not
/// make the decoder allocate gigabytes.
const MAX_BODY: usize = 64 << 20;

/// A stored body as it was received. `raw_length` is the length recorded
/// when it was stored (none for rows stored before it was): a decoded body
/// of another length is damaged, not shortened silently.
pub(crate) fn unpack(
    stored: Vec<u8>,
    encoding: &str,
    raw_length: Option<i64>,
) -> Result<Vec<u8>, StoreError> {
    let damaged = |why: String| StoreError::Corrupt(format!("a stored body cannot be read: {why}"));
    let body = match encoding {
        IDENTITY => stored,
        LZ4 => {
            let (prefix, block) = stored
                .split_first_chunk::<4>()
                .ok_or_else(|| damaged("no length".into()))?;
            let length = u32::from_le_bytes(*prefix) as usize;
            if length > MAX_BODY {
                return Err(damaged(format!("a length of {length} bytes")));
            }
            let body = lz4_flex::decompress(block, length).map_err(|e| damaged(e.to_string()))?;
            if body.len() != length {
                return Err(damaged(format!("{} of {length} bytes", body.len())));
            }
            body
        }
        other => return Err(damaged(format!("an unknown encoding {other:?}"))),
    };
    match raw_length {
        Some(expected) if usize::try_from(expected).ok() != Some(body.len()) => Err(damaged(
            format!("{} bytes where {expected} were stored", body.len()),
        )),
        _ => Ok(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_back_byte_for_byte_and_json_is_stored_smaller() {
        let json = br#"{"id":"evt_1","object":"event","data":{"object":{"id":"in_1","object":"invoice","lines":{"data":[{"price":{"id":"price_1"}},{"price":{"id":"price_2"}}]}}},"type":"invoice.paid"}"#;
        let (stored, encoding) = pack(json);
        assert_eq!(encoding, LZ4);
        assert!(
            stored.len() < json.len(),
            "{} ≥ {}",
            stored.len(),
            json.len()
        );
        let length = Some(json.len() as i64);
        assert_eq!(
            unpack(stored.clone(), encoding, length).expect("unpack"),
            json.to_vec()
        );
        assert_eq!(
            unpack(stored.clone(), encoding, None).expect("unpack"),
            json.to_vec()
        );
        // What does not shrink is kept as it is.
        let (kept, encoding) = pack(b"{}");
        assert_eq!((kept.as_slice(), encoding), (&b"{}"[..], IDENTITY));

        // Damage is an error: never a panic, a huge allocation or a shorter body.
        for cut in 0..stored.len() {
            let damaged = stored[..cut].to_vec();
            assert!(unpack(damaged, LZ4, None).is_err(), "cut at {cut}");
        }
        for claimed in [0u32, 10, u32::MAX] {
            let mut wrong = stored.clone();
            wrong[..4].copy_from_slice(&claimed.to_le_bytes());
            assert!(unpack(wrong, LZ4, None).is_err(), "a length of {claimed}");
        }
        assert!(
            unpack(stored, LZ4, Some(3)).is_err(),
            "another length than stored"
        );
        assert!(unpack(Vec::new(), "zip", None).is_err());
    }
}

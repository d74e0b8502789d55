//! Raw bodies as the inbox keeps them: compressed (an LZ4 block with its
//! length first) when that makes them smaller, as received otherwise. Byte
//! for byte the same when read back; Stripe's JSON shrinks to about half.

use crate::StoreError;

/// How a stored body is encoded (`stripe_event_bodies.encoding`).
pub(super) const IDENTITY: &str = "identity";
const LZ4: &str = "lz4";

/// A body as stored, with its encoding.
pub(super) fn pack(body: &[u8]) -> (Vec<u8>, &'static str) {
    let packed = lz4_flex::compress_prepend_size(body);
    if packed.len() < body.len() {
        (packed, LZ4)
    } else {
        (body.to_vec(), IDENTITY)
    }
}

/// A stored body as it was received.
pub(super) fn unpack(stored: Vec<u8>, encoding: &str) -> Result<Vec<u8>, StoreError> {
    match encoding {
        IDENTITY => Ok(stored),
        LZ4 => lz4_flex::decompress_size_prepended(&stored)
            .map_err(|e| StoreError::Corrupt(format!("a stored body cannot be read: {e}"))),
        other => Err(StoreError::Corrupt(format!(
            "a stored body has an unknown encoding {other:?}"
        ))),
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
        assert_eq!(unpack(stored, encoding).expect("unpack"), json.to_vec());
        // What does not shrink is kept as it is.
        let (stored, encoding) = pack(b"{}");
        assert_eq!((stored.as_slice(), encoding), (&b"{}"[..], IDENTITY));
        assert!(
            unpack(vec![9, 9], LZ4).is_err(),
            "a damaged body is an error, not a panic"
        );
        assert!(unpack(Vec::new(), "zip").is_err());
    }
}

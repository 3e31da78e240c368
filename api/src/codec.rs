//! The one place that knows the wire and storage encoding is CBOR (serde_cbor), so it can be swapped.

use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {what} as CBOR: {source}")]
    Encode {
        what: &'static str,
        source: serde_cbor::Error,
    },
    #[error("malformed CBOR for {what}: {source}")]
    Decode {
        what: &'static str,
        source: serde_cbor::Error,
    },
}

/// Encodes a value; `what` names it in errors.
pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    serde_cbor::to_vec(value).map_err(|source| CodecError::Encode { what, source })
}

/// Encodes a value after whatever `out` already holds (a frame header, say).
pub fn encode_into<T: Serialize>(
    what: &'static str,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    serde_cbor::to_writer(out, value).map_err(|source| CodecError::Encode { what, source })
}

/// Decodes untrusted bytes; never panics on malformed input.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    serde_cbor::from_slice(bytes).map_err(|source| CodecError::Decode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{Object, ObjectKey};

    #[test]
    fn object_round_trips_through_cbor() {
        let yaml = "apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {name: a, labels: {app: x}}\nspec:\n  containers: [{name: c, image: 'sha256:00'}]\n";
        let mut objs = crate::manifest::parse_documents(yaml, "test").unwrap();
        objs[0].default_namespace("default");
        let bytes = encode("object", &objs[0]).unwrap();
        let back: Object = decode("object", &bytes).unwrap();
        assert_eq!(back, objs[0]);
        assert_eq!(back.key(), ObjectKey::new(crate::Kind::Pod, "default", "a"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff\xff", b"\x9f\x9f\x9f\x9f", b"\xbf\x61"] {
            assert!(decode::<Object>("object", junk).is_err());
        }
    }
}

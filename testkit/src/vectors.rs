//! The AWP/1 test vectors, typed.
//!
//! `vectors.json` has two sections. `valid`: frames as hex with their
//! decoded `frame` (in the JSON shape of `awp_protocol::json`), whether
//! encoding that frame must give back exactly the bytes (`encode_exact`), and
//! for BATCHes the DynamoDB `items` they must become (without `received_at`
//! and `expires_at`). `invalid`: bytes a client might send, with the answer
//! each must get (`expect`: an ERROR code name, or `REJECTED` for ACK
//! REJECTED) and whether they are sent after WELCOME.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// The file's text, embedded so tests need no path at run time.
pub const VECTORS_JSON: &str = include_str!("../../protocol/tests/vectors.json");

/// Both sections of the file.
#[derive(Debug, Deserialize)]
pub struct Vectors {
    /// Frames that decode.
    pub valid: Vec<ValidVector>,
    /// Input that must be refused, and how.
    pub invalid: Vec<InvalidVector>,
}

/// A frame that decodes.
#[derive(Debug, Deserialize)]
pub struct ValidVector {
    /// A unique name, e.g. `batch_mixed_kinds`.
    pub name: String,
    /// The frame's bytes.
    #[serde(rename = "hex", deserialize_with = "from_hex")]
    pub bytes: Vec<u8>,
    /// The decoded frame, in the JSON shape of `awp_protocol::json`.
    pub frame: Value,
    /// Whether encoding `frame` must give exactly `bytes`.
    #[serde(default)]
    pub encode_exact: bool,
    /// For BATCHes: the DynamoDB items (DynamoDB JSON) the batch must become,
    /// without `received_at` and `expires_at`.
    #[serde(default)]
    pub items: Option<Vec<Value>>,
    /// What the vector shows.
    #[serde(default)]
    pub note: String,
}

/// Input that must be refused.
#[derive(Debug, Deserialize)]
pub struct InvalidVector {
    /// A unique name, e.g. `bad_crc`.
    pub name: String,
    /// The bytes a client sends.
    #[serde(rename = "hex", deserialize_with = "from_hex")]
    pub bytes: Vec<u8>,
    /// The answer: an ERROR code's name (`CHECKSUM_MISMATCH`, ...) or `REJECTED`.
    pub expect: String,
    /// Whether the bytes are sent after WELCOME (else right after the preamble).
    #[serde(default)]
    pub after_welcome: bool,
    /// What the vector shows.
    #[serde(default)]
    pub note: String,
}

fn from_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    hex::decode(&text).map_err(serde::de::Error::custom)
}

/// The vectors, parsed on first use.
pub fn vectors() -> &'static Vectors {
    static VECTORS: OnceLock<Vectors> = OnceLock::new();
    VECTORS.get_or_init(|| serde_json::from_str(VECTORS_JSON).expect("protocol/tests/vectors.json is valid"))
}

impl Vectors {
    /// A valid vector by name; panics (failing the test) if there is none.
    pub fn valid(&self, name: &str) -> &ValidVector {
        self.valid
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no valid vector {name:?}"))
    }

    /// An invalid vector by name; panics (failing the test) if there is none.
    pub fn invalid(&self, name: &str) -> &InvalidVector {
        self.invalid
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no invalid vector {name:?}"))
    }

    /// The bytes of a vector of either section, by name.
    pub fn bytes(&self, name: &str) -> &[u8] {
        match self.valid.iter().find(|v| v.name == name) {
            Some(v) => &v.bytes,
            None => &self.invalid(name).bytes,
        }
    }

    /// The valid vectors that carry `items`, with them.
    pub fn with_items(&self) -> impl Iterator<Item = (&ValidVector, &[Value])> {
        self.valid
            .iter()
            .filter_map(|v| v.items.as_deref().map(|items| (v, items)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vector_loads() {
        let v = vectors();
        assert_eq!(v.valid.len(), 17);
        assert_eq!(v.invalid.len(), 56);
        assert!(v.valid.iter().all(|x| !x.bytes.is_empty()));
        assert!(v.with_items().count() >= 2);
        assert_eq!(v.invalid("bad_crc").expect, "CHECKSUM_MISMATCH");
        assert_eq!(v.bytes("bad_crc"), &v.invalid("bad_crc").bytes[..]);
    }
}

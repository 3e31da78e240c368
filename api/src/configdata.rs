//! ConfigMap and Secret: named key/value data that pods consume as files or environment.

use crate::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMap {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64-encoded values, for bytes that are not UTF-8.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default = "opaque", rename = "type")]
    pub type_: String,
    /// Base64-encoded values, as in Kubernetes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values, merged into `data` (encoded) by the API server; never stored as is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

fn opaque() -> String {
    "Opaque".into()
}

/// Base64 (standard alphabet, padded), the encoding Kubernetes uses for secret data.
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not valid base64: {e}"))
}

impl ConfigMap {
    /// Every key's bytes: `data` as UTF-8 and `binaryData` decoded.
    pub fn entries(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        for (k, v) in &self.binary_data {
            out.insert(
                k.clone(),
                decode_base64(v).map_err(|e| format!("binaryData[{k:?}]: {e}"))?,
            );
        }
        Ok(out)
    }
}

impl Secret {
    pub fn entries(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.data {
            out.insert(
                k.clone(),
                decode_base64(v).map_err(|e| format!("data[{k:?}]: {e}"))?,
            );
        }
        for (k, v) in &self.string_data {
            out.insert(k.clone(), v.clone().into_bytes());
        }
        Ok(out)
    }

    /// Folds `stringData` into `data`, as the API server does before storing.
    pub fn normalize(&mut self) {
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data.insert(k, encode_base64(v.as_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_data_folds_into_base64() {
        let mut s = Secret::default();
        s.string_data.insert("password".into(), "hunter2".into());
        s.normalize();
        assert!(s.string_data.is_empty());
        assert_eq!(s.data["password"], "aHVudGVyMg==");
        assert_eq!(s.entries().unwrap()["password"], b"hunter2");
        s.data.insert("bad".into(), "***".into());
        assert!(s.entries().unwrap_err().contains("bad"));
    }
}

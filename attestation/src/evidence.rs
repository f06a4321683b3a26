//! The evidence bundle: what the enclave hands out at `GET /v1/attestation`.
//!
//! This module exists so that the enclave, the (untrusted) gateway that relays the bundle, and
//! the client all agree on one JSON shape. Binary fields are lower-case hex strings. A bundle is
//! only *claims*: nothing in it is trusted until [`crate::verify::verify`] turns it into a
//! [`crate::verify::VerifiedEvidence`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::binding::Binding;
use crate::error::{Error, Result};
use crate::provider::RawEvidence;

/// The bundle format this code writes and accepts.
pub const FORMAT_VERSION: u32 = 1;

/// Attestation evidence as sent over the wire (JSON, binary fields hex-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The provider that produced the report: `"snp"` or `"sim"`.
    pub provider: String,
    /// True for SIMULATED evidence (no hardware isolation at all).
    pub simulated: bool,
    /// The 1184-byte SEV-SNP attestation report.
    #[serde(with = "hex_vec")]
    pub report: Vec<u8>,
    /// VCEK certificate, DER.
    #[serde(with = "hex_vec")]
    pub vcek_der: Vec<u8>,
    /// ASK certificate, DER.
    #[serde(with = "hex_vec")]
    pub ask_der: Vec<u8>,
    /// ARK certificate, DER.
    #[serde(with = "hex_vec")]
    pub ark_der: Vec<u8>,
    /// See [`Binding::hpke_key_config`].
    #[serde(with = "hex_vec")]
    pub hpke_key_config: Vec<u8>,
    /// See [`Binding::signing_key`].
    #[serde(with = "hex_arr")]
    pub signing_key: [u8; 32],
    /// See [`Binding::policy_sha256`].
    #[serde(with = "hex_arr")]
    pub policy_sha256: [u8; 32],
    /// See [`Binding::model_digests`]; values hex.
    #[serde(with = "hex_map")]
    pub model_digests: BTreeMap<String, [u8; 32]>,
    /// See [`Binding::build_version`].
    pub build_version: String,
    /// See [`Binding::sandbox_status`].
    pub sandbox_status: String,
    /// See [`Binding::nonce`].
    #[serde(with = "hex_vec")]
    pub nonce: Vec<u8>,
}

impl EvidenceBundle {
    /// Assembles a bundle from a provider's output and the binding it was produced for.
    pub fn new(provider: &str, simulated: bool, raw: RawEvidence, binding: Binding) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            provider: provider.to_string(),
            simulated,
            report: raw.report,
            vcek_der: raw.vcek_der,
            ask_der: raw.ask_der,
            ark_der: raw.ark_der,
            hpke_key_config: binding.hpke_key_config,
            signing_key: binding.signing_key,
            policy_sha256: binding.policy_sha256,
            model_digests: binding.model_digests,
            build_version: binding.build_version,
            sandbox_status: binding.sandbox_status,
            nonce: binding.nonce,
        }
    }

    /// The binding claimed by this bundle (to recompute `REPORT_DATA`).
    pub fn binding(&self) -> Binding {
        Binding {
            hpke_key_config: self.hpke_key_config.clone(),
            signing_key: self.signing_key,
            policy_sha256: self.policy_sha256,
            model_digests: self.model_digests.clone(),
            build_version: self.build_version.clone(),
            sandbox_status: self.sandbox_status.clone(),
            nonce: self.nonce.clone(),
        }
    }

    /// Encodes the bundle as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::BundleJson(e.to_string()))
    }

    /// Decodes a bundle from JSON; rejects unknown fields and other format versions.
    pub fn from_json(s: &str) -> Result<Self> {
        let b: Self = serde_json::from_str(s).map_err(|e| Error::BundleJson(e.to_string()))?;
        if b.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedBundleVersion(b.format_version));
        }
        Ok(b)
    }
}

mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

mod hex_arr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod hex_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, [u8; 32]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, hex::encode(v))))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, [u8; 32]>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&v, &mut out).map_err(|e| {
                    serde::de::Error::custom(format!("model digest for {k:?}: {e}"))
                })?;
                Ok((k, out))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EvidenceBundle {
        let mut m = BTreeMap::new();
        m.insert("m".to_string(), [0xAB; 32]);
        EvidenceBundle {
            format_version: 1,
            provider: "sim".into(),
            simulated: true,
            report: vec![1, 2, 3],
            vcek_der: vec![4],
            ask_der: vec![5],
            ark_der: vec![6],
            hpke_key_config: vec![7, 8],
            signing_key: [9; 32],
            policy_sha256: [10; 32],
            model_digests: m,
            build_version: "v".into(),
            sandbox_status: "none".into(),
            nonce: vec![0xFF],
        }
    }

    #[test]
    fn json_round_trip_with_hex_fields() {
        let b = sample();
        let j = b.to_json().unwrap();
        assert!(j.contains("\"report\": \"010203\""));
        assert!(j.contains(&"ab".repeat(32)));
        assert_eq!(EvidenceBundle::from_json(&j).unwrap(), b);
    }

    #[test]
    fn typed_errors_for_bad_json() {
        let mut b = sample();
        b.format_version = 2;
        let j = serde_json::to_string(&b).unwrap();
        assert!(matches!(
            EvidenceBundle::from_json(&j),
            Err(Error::UnsupportedBundleVersion(2))
        ));
        let j = sample().to_json().unwrap().replace("\"010203\"", "\"0g\"");
        assert!(matches!(
            EvidenceBundle::from_json(&j),
            Err(Error::BundleJson(_))
        ));
        let j = sample()
            .to_json()
            .unwrap()
            .replace(&"ab".repeat(32), "abab");
        assert!(matches!(
            EvidenceBundle::from_json(&j),
            Err(Error::BundleJson(_))
        ));
        let j = sample()
            .to_json()
            .unwrap()
            .replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            EvidenceBundle::from_json(&j),
            Err(Error::BundleJson(_))
        ));
        assert!(matches!(
            EvidenceBundle::from_json("nope"),
            Err(Error::BundleJson(_))
        ));
    }
}

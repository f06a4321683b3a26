//! What the enclave promises inside `REPORT_DATA`, and how anyone recomputes it.
//!
//! This module exists because the 64 bytes of `REPORT_DATA` are the only guest-chosen bytes the
//! AMD firmware signs: by putting a hash of the enclave's keys, policy, models, build and the
//! client's nonce there, the signed report vouches for all of them. Every client (Rust or not)
//! must recompute this hash bit for bit, so the pre-image is specified exactly in
//! [`report_data`]'s documentation.

use std::collections::BTreeMap;

use sha2::{Digest, Sha512};

/// Domain-separation label, the first bytes of the `REPORT_DATA` pre-image.
pub const DOMAIN_LABEL: &[u8] = b"cloister/evidence/v1";

/// Everything the enclave binds into `REPORT_DATA`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binding {
    /// The enclave's HPKE (OHTTP) key configuration, as served to clients.
    pub hpke_key_config: Vec<u8>,
    /// The enclave's Ed25519 signing public key (audit records, checkpoints).
    pub signing_key: [u8; 32],
    /// SHA-256 of the policy file in force.
    pub policy_sha256: [u8; 32],
    /// Model id → SHA-256 of the model file, for every model served.
    pub model_digests: BTreeMap<String, [u8; 32]>,
    /// The enclave's build version string.
    pub build_version: String,
    /// The sandbox in force, as the enclave describes it (e.g. `enforce: landlock abi 6, seccomp`);
    /// `none` when no sandbox is applied.
    pub sandbox_status: String,
    /// The client's freshness nonce.
    pub nonce: Vec<u8>,
}

/// Computes `REPORT_DATA` for `b`.
///
/// `REPORT_DATA = SHA-512(P)` where the pre-image `P` is the concatenation of:
///
/// 1. the 20 ASCII bytes `cloister/evidence/v1` (no length prefix, no terminator);
/// 2. `item(hpke_key_config)`;
/// 3. `item(signing_key)` (32 bytes);
/// 4. `item(policy_sha256)` (32 bytes);
/// 5. `u32be(number of models)`, then for each model in ascending byte order of its id
///    (`BTreeMap` order): `item(id as UTF-8)`, `item(sha256)` (32 bytes);
/// 6. `item(build_version as UTF-8)`;
/// 7. `item(sandbox_status as UTF-8)`;
/// 8. `item(nonce)`;
///
/// where `item(x) = u32be(len(x)) || x` and `u32be` is a 4-byte big-endian unsigned integer.
/// The 64-byte SHA-512 output fills `REPORT_DATA` exactly.
pub fn report_data(b: &Binding) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(DOMAIN_LABEL);
    item(&mut h, &b.hpke_key_config);
    item(&mut h, &b.signing_key);
    item(&mut h, &b.policy_sha256);
    h.update(len_u32(b.model_digests.len()).to_be_bytes());
    for (id, digest) in &b.model_digests {
        item(&mut h, id.as_bytes());
        item(&mut h, digest);
    }
    item(&mut h, b.build_version.as_bytes());
    item(&mut h, b.sandbox_status.as_bytes());
    item(&mut h, &b.nonce);
    h.finalize().into()
}

fn len_u32(n: usize) -> u32 {
    // INVARIANT: binding items are small (keys, digests, short strings); a length beyond
    // u32::MAX cannot be represented, so saturate, which cannot collide with a real item
    // because such an item could never be hashed in full by a peer either.
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn item(h: &mut Sha512, bytes: &[u8]) {
    h.update(len_u32(bytes.len()).to_be_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Binding {
        let mut m = BTreeMap::new();
        m.insert("b-model".to_string(), [2u8; 32]);
        m.insert("a-model".to_string(), [1u8; 32]);
        Binding {
            hpke_key_config: vec![9, 9, 9],
            signing_key: [3; 32],
            policy_sha256: [4; 32],
            model_digests: m,
            build_version: "0.1.0".into(),
            sandbox_status: "enforce".into(),
            nonce: b"nonce".to_vec(),
        }
    }

    #[test]
    fn matches_hand_built_preimage() {
        let mut p = Vec::new();
        p.extend_from_slice(b"cloister/evidence/v1");
        let it = |p: &mut Vec<u8>, x: &[u8]| {
            p.extend_from_slice(&(x.len() as u32).to_be_bytes());
            p.extend_from_slice(x);
        };
        it(&mut p, &[9, 9, 9]);
        it(&mut p, &[3; 32]);
        it(&mut p, &[4; 32]);
        p.extend_from_slice(&2u32.to_be_bytes());
        it(&mut p, b"a-model");
        it(&mut p, &[1; 32]);
        it(&mut p, b"b-model");
        it(&mut p, &[2; 32]);
        it(&mut p, b"0.1.0");
        it(&mut p, b"enforce");
        it(&mut p, b"nonce");
        let want: [u8; 64] = Sha512::digest(&p).into();
        assert_eq!(report_data(&sample()), want);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = report_data(&sample());
        let mut b = sample();
        b.hpke_key_config.push(0);
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.signing_key[0] ^= 1;
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.policy_sha256[31] ^= 1;
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.model_digests.insert("a-model".into(), [7; 32]);
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.model_digests.remove("b-model");
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.build_version.push('x');
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.sandbox_status = "none".into();
        assert_ne!(report_data(&b), base);
        let mut b = sample();
        b.nonce.clear();
        assert_ne!(report_data(&b), base);
    }

    #[test]
    fn length_prefixes_prevent_shifting_bytes_between_fields() {
        let mut a = sample();
        a.build_version = "0.1.0n".into();
        a.nonce = b"once".to_vec();
        assert_ne!(report_data(&a), report_data(&sample()));
    }
}

//! Tenant credentials, split so the untrusted gateway never learns a tenant's API key.
//!
//! A tenant holds one secret, its API key. The *inner* credential — checked by
//! the enclave — is the API key itself, carried inside the sealed request. The
//! *outer* credential — checked by the gateway — is a token derived from the key
//! with a one-way, domain-separated hash. The gateway stores only the SHA-256 of
//! that token, so a hostile gateway (or a stolen gateway configuration) cannot
//! recover the API key and cannot forge sealed requests as the tenant.

use sha2::{Digest, Sha256};

const GATEWAY_TOKEN_LABEL: &[u8] = b"cloister/v1/gateway-token";

/// The bearer token a client presents to the gateway, derived from the API key.
pub fn gateway_token(api_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(GATEWAY_TOKEN_LABEL);
    h.update((api_key.len() as u32).to_be_bytes());
    h.update(api_key.as_bytes());
    hex::encode(h.finalize())
}

/// SHA-256 of a secret, as stored in configuration files (never the secret itself).
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// SHA-256 of a secret as raw bytes.
pub fn sha256(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_token_is_not_the_key_nor_its_plain_hash() {
        let key = "ck_test_0123456789";
        let token = gateway_token(key);
        assert_ne!(token, key);
        assert_ne!(token, sha256_hex(key));
        assert_eq!(token.len(), 64);
        assert_eq!(token, gateway_token(key));
        assert_ne!(token, gateway_token("ck_test_0123456788"));
    }
}

//! Both ends of the seal between a client and the enclave.
//!
//! A request is a Binary HTTP (RFC 9292) message encapsulated with Oblivious
//! HTTP (RFC 9458; HPKE X25519/HKDF-SHA256 with AES-128-GCM or
//! ChaCha20-Poly1305, via the `ohttp` crate's pure-Rust backend) to the key
//! configuration bound in the enclave's attestation evidence. The response is
//! sealed under keys derived from the request's HPKE context, so only the
//! client that sealed the request can open it.
//!
//! This crate is the *only* place that can open sealed traffic; the gateway
//! must never depend on it (`gateway/tests/dependency_boundary.rs`).

#![forbid(unsafe_code)]

use std::io::Cursor;

use bhttp::{Message, Mode, StatusCode};
use cloister_protocol::he::{HE_INFER_PATH, HE_KEYS_PATH, HE_PROGRAM_PATH};
use cloister_protocol::inner::{BUDGET_PATH, INFER_PATH, INNER_AUTHORITY};

pub use ohttp::KeyConfig;

/// Length of the OHTTP request header plus the X25519 encapsulated key: key id
/// (1), KEM (2), KDF (2), AEAD (2), `enc` (32). These bytes are unique per
/// sealed request and serve as its replay fingerprint.
pub const ENCAPSULATION_PREFIX_LEN: usize = 7 + 32;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key configuration is malformed or unsupported.
    #[error("invalid OHTTP key configuration: {0}")]
    KeyConfig(ohttp::Error),
    /// Encapsulation failed.
    #[error("cannot seal: {0}")]
    Seal(ohttp::Error),
    /// The sealed bytes are truncated, corrupted, replayed under a wrong key, or not OHTTP.
    #[error("cannot open sealed message: {0}")]
    Open(ohttp::Error),
    /// The opened bytes are not a valid Binary HTTP message.
    #[error("sealed message does not hold a valid Binary HTTP message: {0}")]
    Bhttp(bhttp::Error),
    /// The inner message is not a request this service accepts.
    #[error("inner request is not one of the routes in INNER_ROUTES (POST {INFER_PATH}, GET {BUDGET_PATH}, ...): {0}")]
    UnexpectedInner(String),
}

/// Every inner request the enclave answers: method and path.
pub const INNER_ROUTES: [(&str, &str); 5] = [
    ("POST", INFER_PATH),
    ("GET", BUDGET_PATH),
    ("GET", HE_PROGRAM_PATH),
    ("POST", HE_KEYS_PATH),
    ("POST", HE_INFER_PATH),
];

/// Generates a fresh X25519 HPKE key configuration for the enclave.
pub fn generate_key_config(key_id: u8) -> Result<KeyConfig, SealError> {
    use ohttp::hpke::{Aead, Kdf, Kem};
    KeyConfig::new(
        key_id,
        Kem::X25519Sha256,
        vec![
            ohttp::SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
            ohttp::SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
        ],
    )
    .map_err(SealError::KeyConfig)
}

/// Encodes a key configuration's public part (RFC 9458 §3).
pub fn encode_key_config(config: &KeyConfig) -> Result<Vec<u8>, SealError> {
    config.encode().map_err(SealError::KeyConfig)
}

/// The client end: seals one request, then opens its response.
pub mod client {
    use super::*;

    /// Holds the HPKE context needed to open the response to one request.
    pub struct PendingResponse(ohttp::ClientResponse);

    /// An opened inner response.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct InnerResponse {
        /// HTTP status inside the seal.
        pub status: u16,
        /// Body (JSON).
        pub body: Vec<u8>,
    }

    /// Seals `POST /v1/infer` carrying `api_key` and `body` to `encoded_key_config`.
    pub fn seal_request(
        encoded_key_config: &[u8],
        api_key: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, PendingResponse), SealError> {
        seal(encoded_key_config, api_key, "POST", INFER_PATH, body)
    }

    /// Seals `GET /v1/budget` (body: a `BudgetRequest`).
    pub fn seal_budget_request(
        encoded_key_config: &[u8],
        api_key: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, PendingResponse), SealError> {
        seal(encoded_key_config, api_key, "GET", BUDGET_PATH, body)
    }

    /// Seals any route of [`INNER_ROUTES`] (e.g. the homomorphic ones) with a JSON `body`.
    pub fn seal_route(
        encoded_key_config: &[u8],
        api_key: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, PendingResponse), SealError> {
        if !INNER_ROUTES.contains(&(method, path)) {
            return Err(SealError::UnexpectedInner(format!(
                "{method} {path} is not a route the enclave answers"
            )));
        }
        seal(encoded_key_config, api_key, method, path, body)
    }

    fn seal(
        encoded_key_config: &[u8],
        api_key: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, PendingResponse), SealError> {
        let mut msg = Message::request(
            method.as_bytes().to_vec(),
            b"https".to_vec(),
            INNER_AUTHORITY.as_bytes().to_vec(),
            path.as_bytes().to_vec(),
        );
        msg.put_header("authorization", format!("Bearer {api_key}"));
        msg.put_header("content-type", "application/json");
        msg.write_content(body);
        let mut inner = Vec::new();
        msg.write_bhttp(Mode::KnownLength, &mut inner)
            .map_err(SealError::Bhttp)?;
        let req = ohttp::ClientRequest::from_encoded_config(encoded_key_config)
            .map_err(SealError::KeyConfig)?;
        let (sealed, pending) = req.encapsulate(&inner).map_err(SealError::Seal)?;
        Ok((sealed, PendingResponse(pending)))
    }

    impl PendingResponse {
        /// Opens the sealed response.
        pub fn open(self, sealed: &[u8]) -> Result<InnerResponse, SealError> {
            let inner = self.0.decapsulate(sealed).map_err(SealError::Open)?;
            let msg = Message::read_bhttp::<Cursor<&[u8]>, Cursor<&[u8]>>(&mut Cursor::new(
                inner.as_slice(),
            ))
            .map_err(SealError::Bhttp)?;
            let status = msg
                .control()
                .status()
                .ok_or_else(|| SealError::UnexpectedInner("response has no status".into()))?
                .code();
            Ok(InnerResponse {
                status,
                body: msg.content().to_vec(),
            })
        }
    }
}

/// The enclave end: opens requests and seals their responses.
pub mod server {
    use super::*;

    /// An opened, well-formed inner request. Its credential is not yet checked.
    #[derive(Debug)]
    pub struct OpenedRequest {
        /// Which request: a path of [`INNER_ROUTES`].
        pub path: &'static str,
        /// The bearer credential from the inner `authorization` header, if any.
        pub credential: Option<String>,
        /// The JSON body.
        pub body: Vec<u8>,
        /// The request's replay fingerprint (see [`ENCAPSULATION_PREFIX_LEN`]).
        pub fingerprint: [u8; ENCAPSULATION_PREFIX_LEN],
    }

    /// Seals the response to one opened request; consumed by use.
    pub struct ResponseSealer(ohttp::ServerResponse);

    impl ResponseSealer {
        /// Seals a response with `status` and a JSON `body`.
        pub fn seal(self, status: u16, body: &[u8]) -> Result<Vec<u8>, SealError> {
            let code = StatusCode::try_from(status).map_err(SealError::Bhttp)?;
            let mut msg = Message::response(code);
            msg.put_header("content-type", "application/json");
            msg.write_content(body);
            let mut inner = Vec::new();
            msg.write_bhttp(Mode::KnownLength, &mut inner)
                .map_err(SealError::Bhttp)?;
            self.0.encapsulate(&inner).map_err(SealError::Seal)
        }
    }

    /// Opens requests sealed to one key configuration.
    pub struct Opener {
        server: ohttp::Server,
        encoded: Vec<u8>,
    }

    impl Opener {
        /// Takes ownership of the private key configuration.
        pub fn new(config: KeyConfig) -> Result<Opener, SealError> {
            let encoded = encode_key_config(&config)?;
            let server = ohttp::Server::new(config).map_err(SealError::KeyConfig)?;
            Ok(Opener { server, encoded })
        }

        /// The public key configuration clients seal to.
        pub fn encoded_config(&self) -> &[u8] {
            &self.encoded
        }

        /// Opens a sealed request. The sealer is returned whenever the HPKE
        /// layer opened, so even a malformed inner message gets a sealed error.
        pub fn open(
            &self,
            sealed: &[u8],
        ) -> Result<(Result<OpenedRequest, SealError>, ResponseSealer), SealError> {
            if sealed.len() < ENCAPSULATION_PREFIX_LEN {
                return Err(SealError::Open(ohttp::Error::Truncated));
            }
            let (inner, sealer) = self.server.decapsulate(sealed).map_err(SealError::Open)?;
            let mut fingerprint = [0u8; ENCAPSULATION_PREFIX_LEN];
            fingerprint.copy_from_slice(&sealed[..ENCAPSULATION_PREFIX_LEN]);
            Ok((parse_inner(&inner, fingerprint), ResponseSealer(sealer)))
        }
    }

    fn parse_inner(
        inner: &[u8],
        fingerprint: [u8; ENCAPSULATION_PREFIX_LEN],
    ) -> Result<OpenedRequest, SealError> {
        let msg = Message::read_bhttp::<Cursor<&[u8]>, Cursor<&[u8]>>(&mut Cursor::new(inner))
            .map_err(SealError::Bhttp)?;
        let control = msg.control();
        let route = INNER_ROUTES.iter().find(|(m, p)| {
            control.method() == Some(m.as_bytes()) && control.path() == Some(p.as_bytes())
        });
        let path = match (route, control.method(), control.path()) {
            (Some((_, path)), _, _) => *path,
            (None, method, path) => {
                return Err(SealError::UnexpectedInner(format!(
                    "got {} {}",
                    String::from_utf8_lossy(method.unwrap_or(b"?")),
                    String::from_utf8_lossy(path.unwrap_or(b"?"))
                )))
            }
        };
        let credential = msg
            .header()
            .get(b"authorization")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_string());
        Ok(OpenedRequest {
            path,
            credential,
            body: msg.content().to_vec(),
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let opener = server::Opener::new(generate_key_config(1).unwrap()).unwrap();
        let config = opener.encoded_config().to_vec();
        let (sealed, pending) = client::seal_request(&config, "key-1", b"{\"a\":1}").unwrap();
        assert!(
            !sealed.windows(7).any(|w| w == b"{\"a\":1}"),
            "plaintext leaked"
        );
        let (opened, sealer) = opener.open(&sealed).unwrap();
        let opened = opened.unwrap();
        assert_eq!(opened.credential.as_deref(), Some("key-1"));
        assert_eq!(opened.body, b"{\"a\":1}");
        let resp = sealer.seal(200, b"{\"ok\":true}").unwrap();
        let inner = pending.open(&resp).unwrap();
        assert_eq!(inner.status, 200);
        assert_eq!(inner.body, b"{\"ok\":true}");

        // Every truncation and a flipped byte fail to open.
        for cut in [0, 5, ENCAPSULATION_PREFIX_LEN, sealed.len() - 1] {
            assert!(opener.open(&sealed[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = sealed.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(opener.open(&flipped).is_err());

        // A request sealed to another enclave's key does not open here.
        let other = server::Opener::new(generate_key_config(1).unwrap()).unwrap();
        let (sealed2, _) = client::seal_request(other.encoded_config(), "k", b"{}").unwrap();
        assert!(opener.open(&sealed2).is_err());
    }
}

//! The client SDK: attest, verify, seal, send, open — in that order.
//!
//! Every inference starts with fresh evidence fetched with a random nonce and
//! verified against the profile (pinned root, signature chain, measurement,
//! `REPORT_DATA` binding, nonce). Only a [`VerifiedEvidence`] yields the key
//! the request is sealed to, so data cannot be sent to unverified evidence.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloister_attestation::{verify, Check, EvidenceBundle, VerifiedEvidence, VerifierPolicy};
use cloister_protocol::auth::gateway_token;
use cloister_protocol::error::ApiError;
use cloister_protocol::inner::{
    AuditReceipt, BudgetReport, BudgetRequest, InferRequest, InferResponse,
};
use cloister_protocol::tensor::WireTensor;
use cloister_protocol::OHTTP_REQUEST_MEDIA_TYPE;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rand::RngCore;

use crate::https::HttpsClient;
use crate::profile::Profile;

/// Why a client operation failed. Variants name the party at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The profile or a file it names is unusable.
    #[error("client setup: {0}")]
    Setup(String),
    /// The gateway could not be reached or the connection failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The gateway (or the enclave, unsealed) refused the request.
    #[error("the gateway refused the request (HTTP {status}): {error}")]
    Gateway {
        /// HTTP status.
        status: u16,
        /// Typed error.
        error: ApiError,
    },
    /// The evidence failed verification; nothing was sent.
    #[error("attestation evidence rejected; no data was sent. Failed checks: {}", failed_names(.0))]
    EvidenceRejected(Vec<Check>),
    /// The enclave refused the request; this error came back sealed.
    #[error("the enclave refused the request (status {status}): {error}")]
    Enclave {
        /// Status inside the seal.
        status: u16,
        /// Typed error.
        error: ApiError,
    },
    /// Sealing or opening failed.
    #[error("seal: {0}")]
    Seal(#[from] cloister_seal::SealError),
    /// A party sent something that does not follow the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

fn failed_names(checks: &[Check]) -> String {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The outcome of an attestation: the evidence and every check made on it.
#[derive(Debug)]
pub struct Attestation {
    /// The evidence as received.
    pub bundle: EvidenceBundle,
    /// Each check, in order.
    pub checks: Vec<Check>,
    /// The verified evidence, when every check passed.
    pub verified: Option<VerifiedEvidence>,
}

/// A successful inference.
#[derive(Debug)]
pub struct Inference {
    /// The opened response.
    pub response: InferResponse,
    /// The evidence the request was sealed to.
    pub evidence: VerifiedEvidence,
}

/// How long verified evidence is reused before the client attests again.
pub const DEFAULT_EVIDENCE_TTL: Duration = Duration::from_secs(300);

/// A client for one Cloister deployment.
///
/// Verified evidence is cached for a bounded time ([`Client::set_evidence_ttl`]) so that a
/// burst of inferences does not attest each time; the cache holds one enclave key, and a
/// `seal_invalid` answer (the enclave restarted with a new key) drops it, re-attests and
/// retries once.
pub struct Client {
    profile: Profile,
    https: HttpsClient,
    verifier: VerifierPolicy,
    cache: Mutex<Option<(VerifiedEvidence, Instant)>>,
    ttl: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random hex, e.g. for request ids.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Client {
    /// Builds a client from a profile file.
    pub fn from_profile_file(path: &Path) -> Result<Client, ClientError> {
        let profile = Profile::load(path).map_err(|e| ClientError::Setup(format!("{e:#}")))?;
        Client::new(profile)
    }

    /// Builds a client from a profile.
    pub fn new(profile: Profile) -> Result<Client, ClientError> {
        let https = HttpsClient::new(
            &profile.gateway_url,
            &profile.ca_cert,
            Duration::from_secs(60),
        )
        .map_err(|e| ClientError::Setup(format!("{e:#}")))?;
        let trust_root_der = read_first_cert(&profile.trust_root)?;
        let verifier = VerifierPolicy {
            trust_root_der,
            allowed_measurements: profile
                .measurements()
                .map_err(|e| ClientError::Setup(format!("{e:#}")))?,
            allow_simulated: profile.allow_simulated,
            min_tcb: None,
            require_sandbox: profile.require_sandbox,
            allow_smt: !profile.forbid_smt,
        };
        Ok(Client {
            profile,
            https,
            verifier,
            cache: Mutex::new(None),
            ttl: DEFAULT_EVIDENCE_TTL,
        })
    }

    /// Sets how long verified evidence is reused; zero attests before every inference.
    pub fn set_evidence_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// The verifier policy built from the profile.
    pub fn verifier_policy(&self) -> &VerifierPolicy {
        &self.verifier
    }

    fn cached(&self) -> Option<VerifiedEvidence> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .as_ref()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(e, _)| e.clone())
    }

    fn remember(&self, evidence: &VerifiedEvidence) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((evidence.clone(), Instant::now()));
    }

    pub(crate) fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Verified evidence: from the cache while fresh, else attested now.
    pub async fn verified_evidence(&self) -> Result<VerifiedEvidence, ClientError> {
        if let Some(e) = self.cached() {
            return Ok(e);
        }
        let attestation = self.attest().await?;
        let evidence = attestation
            .verified
            .ok_or(ClientError::EvidenceRejected(attestation.checks))?;
        self.remember(&evidence);
        Ok(evidence)
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Fetches evidence bound to `nonce`.
    pub async fn fetch_evidence(&self, nonce: &[u8]) -> Result<EvidenceBundle, ClientError> {
        let resp = self
            .https
            .get(&format!("/v1/attestation?nonce={}", hex::encode(nonce)))
            .await
            .map_err(|e| ClientError::Transport(format!("{e:#}")))?;
        if resp.status != 200 {
            return Err(gateway_error(resp.status, &resp.body));
        }
        let text = std::str::from_utf8(&resp.body)
            .map_err(|_| ClientError::Protocol("evidence is not UTF-8 JSON".into()))?;
        EvidenceBundle::from_json(text)
            .map_err(|e| ClientError::Protocol(format!("evidence bundle does not parse: {e}")))
    }

    /// Fetches fresh evidence with a random nonce and verifies it.
    pub async fn attest(&self) -> Result<Attestation, ClientError> {
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let bundle = self.fetch_evidence(&nonce).await?;
        let verification = verify(&bundle, &nonce, &self.verifier);
        let checks = verification.checks.clone();
        Ok(Attestation {
            bundle,
            checks,
            verified: verification.outcome.ok(),
        })
    }

    /// Runs `model` on `inputs`: attests (or reuses fresh verified evidence) and only then
    /// seals the request to the attested key, sends it and opens the answer. If the enclave's
    /// key changed since the evidence was verified, attests again and retries once.
    pub async fn infer(
        &self,
        model: &str,
        inputs: BTreeMap<String, WireTensor>,
    ) -> Result<Inference, ClientError> {
        let evidence = self.verified_evidence().await?;
        match self.infer_with(&evidence, model, inputs.clone()).await {
            Err(ClientError::Gateway { error, .. })
                if error.code == cloister_protocol::error::ErrorCode::SealInvalid =>
            {
                tracing::info!("the enclave did not open the request; re-attesting");
                self.forget();
                let evidence = self.verified_evidence().await?;
                let response = self.infer_with(&evidence, model, inputs).await?;
                Ok(Inference { response, evidence })
            }
            other => other.map(|response| Inference { response, evidence }),
        }
    }

    /// The tenant's privacy budgets, asked through the seal (the gateway cannot see them).
    pub async fn budget(&self) -> Result<BudgetReport, ClientError> {
        let evidence = self.verified_evidence().await?;
        match self.budget_with(&evidence).await {
            Err(ClientError::Gateway { error, .. })
                if error.code == cloister_protocol::error::ErrorCode::SealInvalid =>
            {
                self.forget();
                let evidence = self.verified_evidence().await?;
                self.budget_with(&evidence).await
            }
            other => other,
        }
    }

    async fn budget_with(&self, evidence: &VerifiedEvidence) -> Result<BudgetReport, ClientError> {
        let body = serde_json::to_vec(&BudgetRequest {
            request_id: random_hex(16),
            issued_at_ms: now_ms(),
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (sealed, pending) = cloister_seal::client::seal_budget_request(
            evidence.hpke_key_config(),
            &self.profile.api_key,
            &body,
        )?;
        let inner = self.send_sealed(sealed, pending).await?;
        serde_json::from_slice(&inner)
            .map_err(|e| ClientError::Protocol(format!("budget report does not parse: {e}")))
    }

    /// Sends sealed bytes through the gateway and opens the answer; a sealed error becomes
    /// [`ClientError::Enclave`].
    pub(crate) async fn send_sealed(
        &self,
        sealed: Vec<u8>,
        pending: cloister_seal::client::PendingResponse,
    ) -> Result<Vec<u8>, ClientError> {
        let token = gateway_token(&self.profile.api_key);
        let bearer = format!("Bearer {token}");
        let resp = self
            .https
            .post(
                "/v1/infer",
                &[
                    ("content-type", OHTTP_REQUEST_MEDIA_TYPE),
                    ("authorization", &bearer),
                ],
                sealed,
            )
            .await
            .map_err(|e| ClientError::Transport(format!("{e:#}")))?;
        if resp.status != 200 {
            return Err(gateway_error(resp.status, &resp.body));
        }
        let inner = pending.open(&resp.body)?;
        if inner.status != 200 {
            let error = ApiError::from_body(&inner.body).ok_or_else(|| {
                ClientError::Protocol(format!(
                    "sealed error {} without a typed body",
                    inner.status
                ))
            })?;
            return Err(ClientError::Enclave {
                status: inner.status,
                error,
            });
        }
        Ok(inner.body)
    }

    /// Seals and sends a request to already-verified evidence.
    pub async fn infer_with(
        &self,
        evidence: &VerifiedEvidence,
        model: &str,
        inputs: BTreeMap<String, WireTensor>,
    ) -> Result<InferResponse, ClientError> {
        let request = InferRequest {
            request_id: random_hex(16),
            issued_at_ms: now_ms(),
            model: model.to_string(),
            inputs,
        };
        self.send_request(evidence, &request).await
    }

    /// Seals and sends a prepared request (a caller may reuse a request id to retry: a charged
    /// request is then answered again without a second charge).
    pub async fn send_request(
        &self,
        evidence: &VerifiedEvidence,
        request: &InferRequest,
    ) -> Result<InferResponse, ClientError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        let (sealed, pending) = cloister_seal::client::seal_request(
            evidence.hpke_key_config(),
            &self.profile.api_key,
            &body,
        )?;
        let inner = self.send_sealed(sealed, pending).await?;
        let response: InferResponse = serde_json::from_slice(&inner)
            .map_err(|e| ClientError::Protocol(format!("sealed response does not parse: {e}")))?;
        if response.request_id != request.request_id {
            return Err(ClientError::Protocol(
                "the response answers a different request".into(),
            ));
        }
        verify_receipt(evidence, &response.request_id, &response.audit)?;
        Ok(response)
    }
}

/// Checks the enclave's signature on the audit receipt with the attested key.
pub fn verify_receipt(
    evidence: &VerifiedEvidence,
    request_id: &str,
    receipt: &AuditReceipt,
) -> Result<(), ClientError> {
    let bad = |why: &str| ClientError::Protocol(format!("audit receipt invalid: {why}"));
    let key = VerifyingKey::from_bytes(evidence.signing_key()).map_err(|_| bad("bad key"))?;
    let sig_bytes: [u8; 64] = hex::decode(&receipt.signature)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("signature is not 64 hex bytes"))?;
    let message = AuditReceipt::signed_message(request_id, receipt.index, &receipt.hash);
    key.verify(&message, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| bad("signature does not verify under the attested key"))?;
    verify_receipt_checkpoint(evidence, receipt).map(|_| ())
}

/// Checks the signed audit checkpoint a receipt carries: present, signed by the attested key,
/// and covering the receipt's record (`tree_size > index`). Returns it in the audit crate's
/// form, ready for `cloister audit prove --checkpoint` and proof verification.
pub fn verify_receipt_checkpoint(
    evidence: &VerifiedEvidence,
    receipt: &AuditReceipt,
) -> Result<cloister_audit::Checkpoint, ClientError> {
    let bad = |why: String| ClientError::Protocol(format!("audit receipt invalid: {why}"));
    let wire = receipt
        .checkpoint
        .as_ref()
        .ok_or_else(|| bad("it carries no signed audit checkpoint".into()))?;
    let value = serde_json::to_value(wire).map_err(|e| bad(e.to_string()))?;
    let checkpoint =
        cloister_audit::Checkpoint::from_value(&value).map_err(|e| bad(e.to_string()))?;
    checkpoint
        .verify_with(&[*evidence.signing_key()])
        .map_err(|e| bad(format!("checkpoint: {e}")))?;
    if checkpoint.tree_size <= receipt.index {
        return Err(bad(format!(
            "the checkpoint covers {} records, not record {}",
            checkpoint.tree_size, receipt.index
        )));
    }
    Ok(checkpoint)
}

fn gateway_error(status: u16, body: &[u8]) -> ClientError {
    match ApiError::from_body(body) {
        Some(error) => ClientError::Gateway { status, error },
        None => ClientError::Protocol(format!("HTTP {status} without a typed error body")),
    }
}

fn read_first_cert(path: &Path) -> Result<Vec<u8>, ClientError> {
    let file = std::fs::File::open(path).map_err(|e| {
        ClientError::Setup(format!("cannot open trust root {}: {e}", path.display()))
    })?;
    let mut reader = std::io::BufReader::new(file);
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .ok_or_else(|| ClientError::Setup(format!("no certificate in {}", path.display())))?
        .map_err(|e| ClientError::Setup(format!("bad PEM in {}: {e}", path.display())))?;
    Ok(cert.to_vec())
}

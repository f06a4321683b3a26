//! Answers `SealedRequest` frames: open, authenticate, decide, infer, record, seal.
//!
//! INVARIANT: the audit record of a request is appended and synced to disk
//! before the sealed response leaves [`Enclave::handle_sealed`]; if the append
//! fails, the client gets a sealed `internal` error and no output.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cloister_audit::{keyed_digest, AuditRecord, HomomorphicUse, Outcome, PrivacyCharge};
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::frame::{Frame, FrameKind};
use cloister_protocol::he::{
    HeInferRequest, HeInferResponse, HeKeyChunk, HeKeyChunkAck, HeProgramRequest,
    HeProgramResponse, HE_GUARANTEE, HE_INFER_PATH, HE_KEYS_PATH, HE_PROGRAM_PATH,
};
use cloister_protocol::inner::{
    AuditCheckpoint, AuditReceipt, BudgetReport, BudgetRequest, InferRequest, InferResponse,
    PrivacyReceipt, BUDGET_PATH,
};
use cloister_protocol::tensor::WireTensor;
use cloister_seal::server::OpenedRequest;
use cloister_seal::SealError;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

use crate::convert::{inputs_to_engine, tensor_to_wire};
use crate::evidence::error_frame;
use crate::privacy::ChargeDecision;
use crate::replay::Verdict;
use crate::startup::Enclave;

/// What is known about a request so far, for its audit record.
#[derive(Default)]
struct Context {
    request_id: Option<String>,
    tenant: Option<String>,
    model: Option<String>,
    model_sha256: Option<String>,
    input_digest: Option<String>,
    privacy: Option<PrivacyCharge>,
    homomorphic: Option<HomomorphicUse>,
}

/// The successful part of an inference, before it is recorded.
struct Success {
    request_id: String,
    model: String,
    model_sha256: String,
    outputs: BTreeMap<String, WireTensor>,
    /// Whether the privacy ledger was charged (the answer is then kept for retries).
    charged: bool,
    privacy: Option<PrivacyReceipt>,
}

/// What the enclave decided to answer.
enum Decision {
    /// Fresh outputs.
    Infer(Success),
    /// The tenant's budgets.
    Budget(BudgetReport),
    /// A charged request id seen before: its first answer, byte for byte.
    Repeat(Vec<u8>),
    /// A homomorphic-mode answer: `output` is what the audit record's output digest covers;
    /// `respond` builds the response body once the record's receipt exists.
    Receipted {
        request_id: String,
        output: Vec<u8>,
        respond: Box<dyn FnOnce(AuditReceipt) -> Vec<u8>>,
    },
}

/// An opened request body, by route.
enum Body {
    Infer(InferRequest),
    Budget(BudgetRequest),
    HeProgram(HeProgramRequest),
    HeKey(HeKeyChunk),
    HeInfer(HeInferRequest),
}

impl Body {
    fn parse(path: &str, bytes: &[u8]) -> Result<Body, serde_json::Error> {
        Ok(match path {
            BUDGET_PATH => Body::Budget(serde_json::from_slice(bytes)?),
            HE_PROGRAM_PATH => Body::HeProgram(serde_json::from_slice(bytes)?),
            HE_KEYS_PATH => Body::HeKey(serde_json::from_slice(bytes)?),
            HE_INFER_PATH => Body::HeInfer(serde_json::from_slice(bytes)?),
            _ => Body::Infer(serde_json::from_slice(bytes)?),
        })
    }

    /// The request id and the time the client sealed it.
    fn id_and_time(&self) -> (&str, u64) {
        match self {
            Body::Infer(r) => (&r.request_id, r.issued_at_ms),
            Body::Budget(r) => (&r.request_id, r.issued_at_ms),
            Body::HeProgram(r) => (&r.request_id, r.issued_at_ms),
            Body::HeKey(r) => (&r.request_id, r.issued_at_ms),
            Body::HeInfer(r) => (&r.request_id, r.issued_at_ms),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn is_client_fault(code: ErrorCode) -> bool {
    !matches!(code, ErrorCode::Internal | ErrorCode::InferenceFailed)
}

/// Per-tenant sliding one-minute request counter.
#[derive(Default)]
pub struct RateLimiter(Mutex<HashMap<String, VecDeque<Instant>>>);

impl RateLimiter {
    fn admit(&self, tenant: &str, per_minute: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.entry(tenant.to_string()).or_default();
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() as u64 >= per_minute {
            return false;
        }
        q.push_back(now);
        true
    }
}

impl Enclave {
    /// Handles one sealed request end to end and returns the frame for the gateway.
    pub fn handle_sealed(&self, sealed: &[u8]) -> Frame {
        let started = Instant::now();
        // The policy's input-size limit, enforced here too: the gateway's own limit is the
        // untrusted host's.
        if sealed.len() as u64 > self.policy.service.max_request_bytes {
            let err = ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the sealed request has {} bytes; the policy's max_request_bytes is {}",
                    sealed.len(),
                    self.policy.service.max_request_bytes
                ),
            );
            return match self.record(&Context::default(), Err(&err), None, started) {
                Ok(_) => error_frame(err),
                Err(internal) => error_frame(internal),
            };
        }
        let (opened, sealer) = match self.opener.open(sealed) {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(error = %e, "refused: sealed request does not open");
                let err = ApiError::new(
                    ErrorCode::SealInvalid,
                    "the sealed request could not be opened: it is truncated, corrupted, or \
                     sealed to another enclave key; fetch fresh evidence and seal again",
                );
                return match self.record(&Context::default(), Err(&err), None, started) {
                    Ok(_) => error_frame(err),
                    Err(internal) => error_frame(internal),
                };
            }
        };
        let mut ctx = Context::default();
        let decision = self.decide(opened, &mut ctx);
        let (status, body) = match decision {
            Ok(Decision::Budget(report)) => match self.record(&ctx, Ok(()), None, started) {
                Ok(_) => (200, serde_json::to_vec(&report).unwrap_or_default()),
                Err(internal) => (internal.code.http_status(), internal.to_body()),
            },
            Ok(Decision::Repeat(body)) => {
                let digest = keyed_digest(&self.digest_key, &body);
                match self.record(&ctx, Ok(()), Some(digest), started) {
                    Ok(_) => (200, body),
                    Err(internal) => (internal.code.http_status(), internal.to_body()),
                }
            }
            Ok(Decision::Receipted {
                request_id,
                output,
                respond,
            }) => {
                let digest = keyed_digest(&self.digest_key, &output);
                match self.record(&ctx, Ok(()), Some(digest), started) {
                    Ok((index, hash, checkpoint)) => {
                        let message = AuditReceipt::signed_message(&request_id, index, &hash);
                        let signature = hex::encode(self.signing.sign(&message).to_bytes());
                        let receipt = AuditReceipt {
                            index,
                            hash,
                            signature,
                            checkpoint,
                        };
                        (200, respond(receipt))
                    }
                    Err(internal) => (internal.code.http_status(), internal.to_body()),
                }
            }
            Ok(Decision::Infer(success)) => {
                let outputs_json = serde_json::to_vec(&success.outputs).unwrap_or_default();
                let output_digest = keyed_digest(&self.digest_key, &outputs_json);
                match self.record(&ctx, Ok(()), Some(output_digest), started) {
                    Ok((index, hash, checkpoint)) => {
                        let message =
                            AuditReceipt::signed_message(&success.request_id, index, &hash);
                        let signature = hex::encode(self.signing.sign(&message).to_bytes());
                        let response = InferResponse {
                            request_id: success.request_id,
                            model: success.model,
                            model_sha256: success.model_sha256,
                            outputs: success.outputs,
                            audit: AuditReceipt {
                                index,
                                hash,
                                signature,
                                checkpoint,
                            },
                            privacy: success.privacy,
                        };
                        let body = serde_json::to_vec(&response).unwrap_or_default();
                        if success.charged {
                            self.privacy.remember(&response.request_id, &body);
                        }
                        (200, body)
                    }
                    Err(internal) => (internal.code.http_status(), internal.to_body()),
                }
            }
            Err(err) => {
                tracing::info!(code = %err.code, tenant = ?ctx.tenant, "request refused");
                match self.record(&ctx, Err(&err), None, started) {
                    Ok(_) => (err.code.http_status(), err.to_body()),
                    Err(internal) => (internal.code.http_status(), internal.to_body()),
                }
            }
        };
        match sealer.seal(status, &body) {
            Ok(bytes) => Frame::new(FrameKind::SealedResponse, bytes),
            Err(e) => {
                tracing::error!(error = %e, "sealing the response failed");
                error_frame(ApiError::new(
                    ErrorCode::Internal,
                    "sealing the response failed",
                ))
            }
        }
    }

    /// Signs an audit checkpoint covering every record so far (called at shutdown).
    pub fn checkpoint_audit(&self) {
        match self.audit.with_log(|log| log.checkpoint()) {
            Ok(Some(cp)) => tracing::info!(tree_size = cp.tree_size, "audit checkpoint signed"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "AUDIT CHECKPOINT FAILED"),
        }
    }

    /// Appends the audit record and syncs it; returns its index, chain hash and a signed
    /// checkpoint of the log that covers it (for the response's receipt).
    fn record(
        &self,
        ctx: &Context,
        outcome: Result<(), &ApiError>,
        output_digest: Option<String>,
        started: Instant,
    ) -> Result<(u64, String, Option<AuditCheckpoint>), ApiError> {
        let outcome = match outcome {
            Ok(()) => Outcome::Ok,
            Err(e) if is_client_fault(e.code) => Outcome::Refused {
                code: e.code.as_str().to_string(),
            },
            Err(e) => Outcome::Error {
                code: e.code.as_str().to_string(),
            },
        };
        let record = AuditRecord {
            time_unix_ms: now_ms(),
            request_id: ctx.request_id.clone().unwrap_or_default(),
            tenant: ctx.tenant.clone(),
            model: ctx.model.clone(),
            model_sha256: ctx.model_sha256.clone(),
            policy_sha256: self.policy.digest_hex(),
            outcome,
            input_digest: ctx.input_digest.clone(),
            output_digest,
            privacy: ctx.privacy.clone(),
            latency_us: started.elapsed().as_micros() as u64,
            homomorphic: ctx.homomorphic.clone(),
        };
        // Group commit: returns once this record (perhaps batched with others) is synced.
        match self.audit.commit_signed(record) {
            Ok(c) => {
                if let Some(e) = self.audit.maintenance_failure() {
                    tracing::error!(error = %e, "audit checkpoint or rotation failed; will retry");
                }
                let checkpoint = c.head.map(|h| AuditCheckpoint {
                    log_id: h.log_id,
                    tree_size: h.tree_size,
                    root: hex::encode(h.root),
                    time_unix_ms: h.time_unix_ms,
                    key: hex::encode(h.key),
                    signature: hex::encode(h.signature),
                });
                Ok((c.index, hex::encode(c.hash), checkpoint))
            }
            Err(e) => {
                tracing::error!(error = %e, "AUDIT APPEND FAILED: withholding the response");
                Err(ApiError::new(
                    ErrorCode::Internal,
                    "the audit log could not be written; no output was released",
                ))
            }
        }
    }

    fn decide(
        &self,
        opened: Result<OpenedRequest, SealError>,
        ctx: &mut Context,
    ) -> Result<Decision, ApiError> {
        let opened = opened.map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("the opened request is not POST /v1/infer in Binary HTTP: {e}"),
            )
        })?;
        ctx.input_digest = Some(keyed_digest(&self.digest_key, &opened.body));
        let malformed = |e: serde_json::Error| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "the request body is not a valid {} request: {e}",
                    opened.path
                ),
            )
        };
        let body = Body::parse(opened.path, &opened.body).map_err(malformed)?;
        let (request_id, issued_at_ms) = body.id_and_time();
        let request_id = request_id.to_string();
        if !(16..=64).contains(&request_id.len())
            || !request_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ApiError::new(
                ErrorCode::MalformedRequest,
                "request_id must be 16 to 64 hexadecimal characters",
            ));
        }
        ctx.request_id = Some(request_id.clone());

        // The tenant is authenticated by the credential inside the seal.
        let credential = opened.credential.as_deref().ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadCredential,
                "the sealed request carries no credential",
            )
        })?;
        let hash: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        let tenant = self.policy.tenant_by_api_key_hash(&hash).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadCredential,
                "the credential inside the sealed request is not a known API key",
            )
        })?;
        ctx.tenant = Some(tenant.id.clone());

        let verdict = self.replay.lock().unwrap_or_else(|p| p.into_inner()).check(
            &opened.fingerprint,
            issued_at_ms,
            now_ms(),
        );
        match verdict {
            Verdict::Fresh => {}
            Verdict::Replay => {
                return Err(ApiError::new(
                    ErrorCode::Replay,
                    "this sealed request was already received; seal every request afresh",
                ))
            }
            Verdict::Stale => {
                return Err(ApiError::new(
                    ErrorCode::Stale,
                    format!(
                        "issued_at_ms is more than {} s from the enclave's clock; check the client clock",
                        self.policy.service.replay_window_secs
                    ),
                ))
            }
        }
        if !self.rate.admit(&tenant.id, tenant.max_requests_per_minute) {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "tenant \"{}\" exceeded {} requests per minute",
                    tenant.id, tenant.max_requests_per_minute
                ),
            ));
        }

        let request = match body {
            Body::Infer(r) => r,
            Body::Budget(_) => return Ok(Decision::Budget(self.privacy.budget_report(tenant))),
            Body::HeProgram(r) => return self.he_program(tenant, r, ctx),
            Body::HeKey(r) => return self.he_key_chunk(tenant, r, ctx),
            Body::HeInfer(r) => return self.he_infer(tenant, r, ctx),
        };

        ctx.model = Some(request.model.clone());
        if self.he.model(&request.model).is_some() {
            return Err(ApiError::new(
                ErrorCode::HeModeMismatch,
                format!(
                    "model \"{}\" is served only homomorphically: encrypt the input under your \
                     TFHE key (`cloister infer --he --model {}`)",
                    request.model, request.model
                ),
            ));
        }
        let loaded = self.models.get(&request.model).ok_or_else(|| {
            let allowed: Vec<&str> = tenant.models.iter().map(String::as_str).collect();
            ApiError::new(
                ErrorCode::UnknownModel,
                format!(
                    "no model \"{}\" is served; models available to you: {allowed:?}",
                    request.model
                ),
            )
        })?;
        ctx.model_sha256 = Some(hex::encode(loaded.sha256));
        if !tenant.may_use(&request.model) {
            return Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "the policy does not allow tenant \"{}\" to use model \"{}\"",
                    tenant.id, request.model
                ),
            ));
        }
        let inputs = inputs_to_engine(
            loaded.model.inputs(),
            &request.inputs,
            self.policy.service.max_batch_rows as usize,
        )?;
        let entry = self
            .policy
            .model(&request.model)
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "model missing from the policy"))?;
        // INVARIANT: a charged model's cost is on disk before the model runs (privacy.rs).
        let rows = inputs
            .first()
            .and_then(|(_, t)| t.shape().first().copied())
            .unwrap_or(1);
        let mechanism = crate::privacy::mechanism_name(entry);
        let charge = |cost: u64| {
            mechanism.map(|m| PrivacyCharge {
                mechanism: m.to_string(),
                cost_nano_rho: cost,
            })
        };
        let charged = match self
            .privacy
            .charge(&request.request_id, tenant, entry, rows)?
        {
            ChargeDecision::Free => {
                ctx.privacy = charge(0);
                None
            }
            ChargeDecision::Charged(c) => {
                ctx.privacy = charge(c.cost().as_nano());
                Some(c)
            }
            ChargeDecision::Repeat(body) => {
                // Charged the first time; answering again costs nothing.
                ctx.privacy = charge(0);
                return Ok(Decision::Repeat(body));
            }
        };
        // The model runs in a sandboxed engine worker process, never here (crate::worker).
        let outputs = self.engine.run(&request.model, inputs).map_err(|e| {
            tracing::warn!(model = %request.model, error = %e, "inference failed");
            e.to_api_error()
        })?;
        let (outputs, privacy) = self.privacy.release(entry, outputs, charged.as_ref())?;
        // Confident-GNMax charges released answers after the check: record the whole cost.
        if let (Some(p), Some(c)) = (&privacy, ctx.privacy.as_mut()) {
            c.cost_nano_rho = p.cost_nano_rho;
        }
        let outputs = outputs
            .iter()
            .map(|(name, t)| Ok((name.clone(), tensor_to_wire(t)?)))
            .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
        Ok(Decision::Infer(Success {
            request_id: request.request_id,
            model: request.model,
            model_sha256: hex::encode(loaded.sha256),
            outputs,
            charged: charged.is_some(),
            privacy,
        }))
    }
}

/// The homomorphic routes (`crate::he` holds the programs and keys; these functions apply the
/// policy and shape the answers).
impl Enclave {
    /// The homomorphic model `id` for `tenant`, after the policy's checks.
    fn he_model_for(
        &self,
        tenant: &cloister_policy::Tenant,
        id: &str,
        ctx: &mut Context,
    ) -> Result<&crate::he::HeModel, ApiError> {
        ctx.model = Some(id.to_string());
        let model = match self.he.model(id) {
            Some(m) => m,
            None if self.models.contains_key(id) => {
                return Err(ApiError::new(
                    ErrorCode::HeModeMismatch,
                    format!(
                        "model \"{id}\" is not served homomorphically; send plaintext inputs \
                         (`cloister infer` without --he)"
                    ),
                ))
            }
            None => {
                return Err(ApiError::new(
                    ErrorCode::UnknownModel,
                    format!("no homomorphic model \"{id}\" is served"),
                ))
            }
        };
        ctx.model_sha256 = Some(hex::encode(model.sha256));
        let entry = self.policy.model(id);
        if !tenant.may_use(id) || !entry.is_some_and(|e| e.he_allows(&tenant.id)) {
            return Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "the policy does not allow tenant \"{}\" to use model \"{id}\" homomorphically",
                    tenant.id
                ),
            ));
        }
        Ok(model)
    }

    fn he_program(
        &self,
        tenant: &cloister_policy::Tenant,
        request: HeProgramRequest,
        ctx: &mut Context,
    ) -> Result<Decision, ApiError> {
        let model = self.he_model_for(tenant, &request.model, ctx)?;
        let response = HeProgramResponse {
            request_id: request.request_id.clone(),
            model: request.model,
            model_sha256: hex::encode(model.sha256),
            program: model.text.clone(),
            audit: placeholder_receipt(),
        };
        Ok(Decision::Receipted {
            request_id: request.request_id,
            output: model.text.clone().into_bytes(),
            respond: Box::new(move |audit| {
                serde_json::to_vec(&HeProgramResponse { audit, ..response }).unwrap_or_default()
            }),
        })
    }

    fn he_key_chunk(
        &self,
        tenant: &cloister_policy::Tenant,
        chunk: HeKeyChunk,
        ctx: &mut Context,
    ) -> Result<Decision, ApiError> {
        let key_id = crate::he::parse_key_id(&chunk.key_id)?;
        ctx.homomorphic = Some(HomomorphicUse {
            key_id: hex::encode(key_id),
            input_never_decrypted: true,
            bootstraps: 0,
        });
        // Only tenants allowed some homomorphic model may store keys.
        let allowed = self
            .policy
            .models
            .iter()
            .any(|m| tenant.may_use(&m.id) && m.he_allows(&tenant.id));
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "tenant \"{}\" may not use any homomorphic model, so it cannot store keys",
                    tenant.id
                ),
            ));
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(chunk.data.as_bytes())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("the chunk's data is not base64: {e}"),
                )
            })?;
        let outcome =
            self.he
                .receive_chunk(&tenant.id, key_id, chunk.total_bytes, chunk.offset, &data)?;
        let ack = HeKeyChunkAck {
            request_id: chunk.request_id.clone(),
            key_id: chunk.key_id,
            received_bytes: outcome.received,
            total_bytes: chunk.total_bytes,
            stored: outcome.stored,
            audit: placeholder_receipt(),
        };
        let output = format!("{}:{}", ack.received_bytes, ack.stored).into_bytes();
        Ok(Decision::Receipted {
            request_id: chunk.request_id,
            output,
            respond: Box::new(move |audit| {
                serde_json::to_vec(&HeKeyChunkAck { audit, ..ack }).unwrap_or_default()
            }),
        })
    }

    fn he_infer(
        &self,
        tenant: &cloister_policy::Tenant,
        request: HeInferRequest,
        ctx: &mut Context,
    ) -> Result<Decision, ApiError> {
        let model = self.he_model_for(tenant, &request.model, ctx)?;
        let input = base64::engine::general_purpose::STANDARD
            .decode(request.input.as_bytes())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("the encrypted input is not base64: {e}"),
                )
            })?;
        // The key id is inside the input; record it as soon as it is known.
        if let Some(id) = input
            .get(cloister_he::client::INPUT_TAG.len()..)
            .and_then(|rest| rest.get(..32))
        {
            ctx.homomorphic = Some(HomomorphicUse {
                key_id: hex::encode(id),
                input_never_decrypted: true,
                bootstraps: 0,
            });
        }
        let (key_id, scores) = self.he.evaluate(&tenant.id, model, &input)?;
        let bytes = scores.to_bytes();
        ctx.homomorphic = Some(HomomorphicUse {
            key_id: hex::encode(key_id),
            input_never_decrypted: true,
            bootstraps: scores.pbs_count as u64,
        });
        let response = HeInferResponse {
            request_id: request.request_id.clone(),
            model: request.model,
            model_sha256: hex::encode(model.sha256),
            key_id: hex::encode(key_id),
            scores: base64::engine::general_purpose::STANDARD.encode(&bytes),
            bootstraps: scores.pbs_count as u64,
            input_decrypted: false,
            guarantee: HE_GUARANTEE.to_string(),
            audit: placeholder_receipt(),
        };
        Ok(Decision::Receipted {
            request_id: request.request_id,
            output: bytes,
            respond: Box::new(move |audit| {
                serde_json::to_vec(&HeInferResponse { audit, ..response }).unwrap_or_default()
            }),
        })
    }
}

/// Filled in by [`Decision::Receipted`]'s `respond` once the record exists.
fn placeholder_receipt() -> AuditReceipt {
    AuditReceipt {
        index: 0,
        hash: String::new(),
        signature: String::new(),
        checkpoint: None,
    }
}

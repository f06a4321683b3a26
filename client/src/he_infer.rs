//! Homomorphic mode, client side: `cloister infer --he --model M --input FILE`.
//!
//! The SDK half ([`Client::he_program`], [`Client::he_upload_key`], [`Client::he_infer`]) talks
//! to the enclave through the seal like every other request; the CLI half ([`run`]) does the
//! whole round trip a user expects:
//!
//! 1. attest the enclave, then fetch the model's integer program and check that its SHA-256
//!    is the digest the verified evidence binds for that model id;
//! 2. quantize each input row with the program's own quantizer, encrypt it under the client
//!    key from `cloister keygen --he` (the secret key never leaves this machine);
//! 3. send it; if the enclave does not hold the tenant's server key yet (`he_key_unknown`),
//!    upload it in chunks through the seal — with progress — and send again;
//! 4. decrypt the scores, decode them, apply the program's decision, and print the class next
//!    to the statement that the enclave never decrypted the input.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use cloister_attestation::VerifiedEvidence;
use cloister_he::client::{EncryptedInput, HeClient};
use cloister_he::program::Program;
use cloister_he::server::EncryptedScores;
use cloister_protocol::error::ErrorCode;
use cloister_protocol::he::{
    HeInferRequest, HeInferResponse, HeKeyChunk, HeKeyChunkAck, HeProgramRequest,
    HeProgramResponse, HE_INFER_PATH, HE_KEYS_PATH, HE_PROGRAM_PATH,
};
use cloister_protocol::tensor::parse_inputs;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::keygen_cli::{CLIENT_KEY_FILE, SERVER_KEY_FILE};
use crate::sdk::{random_hex, verify_receipt, Client, ClientError};

/// Raw key bytes per upload chunk: with base64 and JSON around it, a chunk stays well under the
/// default 1 MiB `max_request_bytes` of the policy and the gateway.
pub const KEY_CHUNK_BYTES: usize = 512 * 1024;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Client {
    /// Seals `body` to `method path`, sends it and parses the JSON answer; re-attests and
    /// retries once when the enclave's key changed.
    async fn he_call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &Req,
    ) -> Result<(Resp, VerifiedEvidence), ClientError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        let mut evidence = self.verified_evidence().await?;
        let mut retried = false;
        loop {
            let (sealed, pending) = cloister_seal::client::seal_route(
                evidence.hpke_key_config(),
                &self.profile().api_key,
                method,
                path,
                &body,
            )?;
            match self.send_sealed(sealed, pending).await {
                Err(ClientError::Gateway { error, .. })
                    if error.code == ErrorCode::SealInvalid && !retried =>
                {
                    retried = true;
                    self.forget();
                    evidence = self.verified_evidence().await?;
                }
                Err(e) => return Err(e),
                Ok(inner) => {
                    let resp = serde_json::from_slice(&inner).map_err(|e| {
                        ClientError::Protocol(format!("sealed response does not parse: {e}"))
                    })?;
                    return Ok((resp, evidence));
                }
            }
        }
    }

    /// The integer program of homomorphic model `model`, checked against the digest the
    /// attested evidence binds for it, with its audit receipt verified.
    pub async fn he_program(
        &self,
        model: &str,
    ) -> Result<(Program, HeProgramResponse), ClientError> {
        let request = HeProgramRequest {
            request_id: random_hex(16),
            issued_at_ms: now_ms(),
            model: model.to_string(),
        };
        let (resp, evidence): (HeProgramResponse, _) =
            self.he_call("GET", HE_PROGRAM_PATH, &request).await?;
        verify_receipt(&evidence, &request.request_id, &resp.audit)?;
        let digest: [u8; 32] = Sha256::digest(resp.program.as_bytes()).into();
        match evidence.model_digests().get(model) {
            Some(bound) if *bound == digest => {}
            Some(bound) => {
                return Err(ClientError::Protocol(format!(
                    "the program served for \"{model}\" hashes to {}, but the attested evidence \
                     binds {}: refusing it",
                    hex::encode(digest),
                    hex::encode(bound)
                )))
            }
            None => {
                return Err(ClientError::Protocol(format!(
                    "the attested evidence binds no model \"{model}\""
                )))
            }
        }
        let program = Program::from_json(&resp.program)
            .map_err(|e| ClientError::Protocol(format!("the served program is invalid: {e}")))?;
        Ok((program, resp))
    }

    /// Uploads the compressed server key in chunks of [`KEY_CHUNK_BYTES`]; `progress` gets
    /// `(bytes acknowledged, total)` after each chunk. Returns when the enclave says it stored
    /// the key.
    pub async fn he_upload_key(
        &self,
        server_key: &[u8],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), ClientError> {
        let key_id = hex::encode(cloister_he::client::key_id_of(server_key));
        let total = server_key.len() as u64;
        let mut offset = 0u64;
        loop {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = (start + KEY_CHUNK_BYTES).min(server_key.len());
            let chunk = HeKeyChunk {
                request_id: random_hex(16),
                issued_at_ms: now_ms(),
                key_id: key_id.clone(),
                total_bytes: total,
                offset,
                data: b64().encode(&server_key[start..end]),
            };
            let ack = self.he_raw_key_chunk(&chunk).await?;
            progress(ack.received_bytes, total);
            if ack.stored {
                return Ok(());
            }
            if ack.received_bytes <= offset {
                return Err(ClientError::Protocol(format!(
                    "the enclave acknowledged {} bytes after a chunk at {offset}: no progress",
                    ack.received_bytes
                )));
            }
            offset = ack.received_bytes;
        }
    }

    /// Sends one prepared key chunk as is (low level: [`Client::he_upload_key`] is the normal
    /// path); the receipt is verified.
    pub async fn he_raw_key_chunk(&self, chunk: &HeKeyChunk) -> Result<HeKeyChunkAck, ClientError> {
        let (ack, evidence): (HeKeyChunkAck, _) = self.he_call("POST", HE_KEYS_PATH, chunk).await?;
        verify_receipt(&evidence, &chunk.request_id, &ack.audit)?;
        Ok(ack)
    }

    /// Sends `input_b64` (whatever it holds) as the encrypted input of one homomorphic
    /// inference (low level, for tests of the enclave's checks).
    pub async fn he_raw_infer(
        &self,
        model: &str,
        input_b64: &str,
    ) -> Result<HeInferResponse, ClientError> {
        let request = HeInferRequest {
            request_id: random_hex(16),
            issued_at_ms: now_ms(),
            model: model.to_string(),
            input: input_b64.to_string(),
        };
        let (resp, evidence): (HeInferResponse, _) =
            self.he_call("POST", HE_INFER_PATH, &request).await?;
        if resp.request_id != request.request_id {
            return Err(ClientError::Protocol(
                "the response answers a different request".into(),
            ));
        }
        verify_receipt(&evidence, &request.request_id, &resp.audit)?;
        Ok(resp)
    }

    /// Sends one encrypted input row and returns the response (receipt verified).
    pub async fn he_infer(
        &self,
        model: &str,
        input: &EncryptedInput,
    ) -> Result<HeInferResponse, ClientError> {
        self.he_raw_infer(model, &b64().encode(input.to_bytes()))
            .await
    }
}

/// Decodes the base64 scores of a response.
pub fn decode_scores(resp: &HeInferResponse) -> Result<EncryptedScores> {
    let bytes = b64()
        .decode(resp.scores.as_bytes())
        .context("the encrypted scores are not base64")?;
    Ok(EncryptedScores::from_bytes(&bytes)?)
}

/// Feature rows of an input file in `cloister infer`'s JSON form: one input, shape `[F]` or
/// `[N, F]`.
pub fn read_rows(input: &Path, features: usize) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read input file {}", input.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("input file {} is not valid JSON", input.display()))?;
    let inputs = parse_inputs(&doc).with_context(|| format!("input file {}", input.display()))?;
    let [(name, tensor)] =
        <[_; 1]>::try_from(inputs.into_iter().collect::<Vec<_>>()).map_err(|v| {
            anyhow::anyhow!(
                "input file {} holds {} inputs; a homomorphic model takes one: [N, {features}] \
                 or [{features}] numbers",
                input.display(),
                v.len()
            )
        })?;
    let width = *tensor.shape.last().unwrap_or(&0);
    if width != features || tensor.shape.len() > 2 || tensor.shape.is_empty() {
        bail!(
            "input \"{name}\" has shape {:?}; the model takes [N, {features}] or [{features}]",
            tensor.shape
        );
    }
    let values = tensor
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_f64()
                .with_context(|| format!("input \"{name}\" element {i} is not a number"))
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(values.chunks(features).map(<[f64]>::to_vec).collect())
}

/// `cloister infer --he`: see the module docs.
pub async fn run(
    profile: &Path,
    model: &str,
    input: &Path,
    keys: &Path,
    json: bool,
) -> Result<ExitCode> {
    let client_key_path = keys.join(CLIENT_KEY_FILE);
    let server_key_path = keys.join(SERVER_KEY_FILE);
    let client_bytes = std::fs::read(&client_key_path).with_context(|| {
        format!(
            "cannot read {}: generate keys first with `cloister keygen --he --out {}`",
            client_key_path.display(),
            keys.display()
        )
    })?;
    let he = HeClient::from_bytes(&client_bytes)
        .with_context(|| format!("{} is not a client key", client_key_path.display()))?;
    let client = Client::from_profile_file(profile)?;
    let (program, served) = client.he_program(model).await?;
    eprintln!(
        "he: program of \"{model}\" ({}) matches the attested digest; {} features, {} outputs",
        &served.model_sha256[..16],
        program.input.features,
        program.outputs()
    );
    let rows = read_rows(input, program.input.features)?;
    let mut results = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let quantized = program.quantize(row)?;
        let encrypted = he.encrypt(&program, &quantized)?;
        let started = Instant::now();
        let response = match client.he_infer(model, &encrypted).await {
            Err(ClientError::Enclave { error, .. }) if error.code == ErrorCode::HeKeyUnknown => {
                let server_key = std::fs::read(&server_key_path).with_context(|| {
                    format!("cannot read the server key {}", server_key_path.display())
                })?;
                eprintln!(
                    "he: the enclave does not hold your server key yet; uploading {:.1} MiB",
                    server_key.len() as f64 / (1024.0 * 1024.0)
                );
                let upload = Instant::now();
                let mut last = 0;
                client
                    .he_upload_key(&server_key, &mut |done, total| {
                        let pct = done * 100 / total.max(1);
                        if pct >= last + 10 || done == total {
                            last = pct;
                            eprintln!("he: uploaded {pct:>3} % ({done} of {total} bytes)");
                        }
                    })
                    .await?;
                eprintln!(
                    "he: server key stored by the enclave in {:.1} s",
                    upload.elapsed().as_secs_f64()
                );
                client.he_infer(model, &encrypted).await?
            }
            other => other?,
        };
        let scores = he.decrypt(&program, &decode_scores(&response)?)?;
        let class = program.decide(&scores);
        let label = class
            .and_then(|c| program.output.classes.get(c).cloned())
            .unwrap_or_else(|| "?".into());
        results.push(json!({
            "row": i,
            "class": class,
            "label": label,
            "scores": scores,
            "bootstraps": response.bootstraps,
            "input_decrypted": response.input_decrypted,
            "round_trip_ms": started.elapsed().as_millis() as u64,
            "audit": response.audit,
        }));
        if !json {
            println!(
                "row {i}: class {} ({label})  scores {:?}  [{} bootstraps, {} ms]",
                class.map_or("-".to_string(), |c| c.to_string()),
                scores,
                response.bootstraps,
                started.elapsed().as_millis()
            );
        }
        if response.input_decrypted {
            bail!("the enclave reports it decrypted the input: this must never happen");
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": model,
                "model_sha256": served.model_sha256,
                "key_id": hex::encode(he.key_id()),
                "results": results,
            }))?
        );
    } else {
        println!(
            "homomorphic: every input was encrypted under your TFHE key and never decrypted by \
             the enclave (key id {})",
            &hex::encode(he.key_id())[..16]
        );
    }
    Ok(ExitCode::SUCCESS)
}

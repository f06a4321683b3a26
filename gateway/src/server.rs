//! The HTTPS front: routes, outer authentication, limits and forwarding.
//!
//! Routes:
//! - `GET /healthz` — the gateway and its enclave are up;
//! - `GET /v1/attestation?nonce=HEX` — fresh evidence from the enclave, bound to the nonce;
//! - `POST /v1/infer` — an OHTTP-sealed request, forwarded as opaque bytes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use cloister_protocol::error::{ApiError, ErrorCode};
use cloister_protocol::frame::{Frame, FrameKind};
use cloister_protocol::{
    MAX_NONCE_LEN, MIN_NONCE_LEN, OHTTP_REQUEST_MEDIA_TYPE, OHTTP_RESPONSE_MEDIA_TYPE,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::GatewayConfig;
use crate::enclave_link::EnclaveLink;
use crate::errors::{error_response, link_error, Body};

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the running gateway.
pub struct Gateway {
    config: GatewayConfig,
    link: EnclaveLink,
    tokens: HashMap<[u8; 32], String>,
    in_flight: Arc<Semaphore>,
}

impl Gateway {
    /// Builds the gateway's state from its configuration.
    pub fn new(config: GatewayConfig) -> Result<Arc<Gateway>> {
        let mut tokens = HashMap::new();
        for t in &config.tenants {
            let mut d = [0u8; 32];
            hex::decode_to_slice(&t.token_sha256, &mut d)
                .with_context(|| format!("tenant {}: token_sha256", t.id))?;
            tokens.insert(d, t.id.clone());
        }
        let link = EnclaveLink::new(config.enclave_socket.clone(), config.enclave_timeout());
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        Ok(Arc::new(Gateway {
            config,
            link,
            tokens,
            in_flight,
        }))
    }

    /// Serves HTTPS on `listener` until `shutdown` completes, then stops
    /// accepting and waits up to five seconds for requests in progress.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let tls = TlsAcceptor::from(crate::tls::server_config(
            &self.config.tls_cert,
            &self.config.tls_key,
        )?);
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let gw = self.clone();
                    let tls = tls.clone();
                    tasks.spawn(async move { gw.connection(tls, tcp, peer).await });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!("gateway stopping: no new connections");
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }

    async fn connection(
        self: Arc<Self>,
        tls: TlsAcceptor,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let gw = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req).await) }
        });
        let result = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.request_timeout())
            .serve_connection(TokioIo::new(stream), service)
            .await;
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }

    /// Handles one request; every failure becomes a typed JSON error here.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let response = match self.route(req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        tracing::info!(
            %method,
            %path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => self.healthz().await,
            (&Method::GET, "/v1/attestation") => self.attestation(req.uri().query()).await,
            (&Method::POST, "/v1/infer") => self.infer(req).await,
            (_, "/healthz" | "/v1/attestation" | "/v1/infer") => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("method {} is not allowed here", req.method()),
            )),
            _ => Err(ApiError::new(ErrorCode::NotFound, "no such route")),
        }
    }

    async fn healthz(&self) -> Result<Response<Body>, ApiError> {
        let answer = self
            .link
            .call(Frame::new(FrameKind::Health, Vec::new()))
            .await
            .map_err(|e| link_error(&e))?;
        match answer.kind {
            FrameKind::HealthOk => Ok(ok_response("application/json", answer.payload)),
            _ => Err(ApiError::new(
                ErrorCode::EnclaveUnavailable,
                "the enclave answered the health check with an unexpected frame",
            )),
        }
    }

    async fn attestation(&self, query: Option<&str>) -> Result<Response<Body>, ApiError> {
        let nonce_hex = query
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("nonce="))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "missing query parameter nonce=HEX (16 to 64 random bytes)",
                )
            })?;
        let nonce = hex::decode(nonce_hex)
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "nonce must be hexadecimal"))?;
        if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes"),
            ));
        }
        let answer = self
            .link
            .call(Frame::new(FrameKind::AttestRequest, nonce))
            .await
            .map_err(|e| link_error(&e))?;
        enclave_answer(answer, FrameKind::Evidence, "application/json")
    }

    async fn infer(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let tenant = self.authenticate(&req)?;
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type != OHTTP_REQUEST_MEDIA_TYPE {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("content-type must be {OHTTP_REQUEST_MEDIA_TYPE}"),
            ));
        }
        let max = self.config.max_body_bytes;
        if let Some(len) = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > max {
                return Err(too_large(max));
            }
        }
        let body = read_body(req.into_body(), max, self.config.request_timeout()).await?;
        let _permit = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many requests in flight; retry shortly",
            )
        })?;
        tracing::debug!(tenant = %tenant, bytes = body.len(), "forwarding sealed request");
        let answer = self
            .link
            .call(Frame::new(FrameKind::SealedRequest, body.to_vec()))
            .await
            .map_err(|e| link_error(&e))?;
        enclave_answer(answer, FrameKind::SealedResponse, OHTTP_RESPONSE_MEDIA_TYPE)
    }

    fn authenticate(&self, req: &Request<Incoming>) -> Result<String, ApiError> {
        let unauthorized = || {
            ApiError::new(
                ErrorCode::Unauthorized,
                "missing or unknown bearer token; use the gateway token from your client profile",
            )
        };
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.tokens.get(&digest).cloned().ok_or_else(unauthorized)
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("request body exceeds the {max}-byte limit"),
    )
}

async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::Timeout,
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Ok(Err(_)) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "the request body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn ok_response(content_type: &str, payload: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(payload)))
        .expect("static response parts are valid")
}

fn enclave_answer(
    answer: Frame,
    expected: FrameKind,
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    if answer.kind == expected {
        return Ok(ok_response(content_type, answer.payload));
    }
    if answer.kind == FrameKind::Error {
        if let Some(e) = ApiError::from_body(&answer.payload) {
            return Err(e);
        }
    }
    Err(ApiError::new(
        ErrorCode::EnclaveUnavailable,
        "the enclave sent an unexpected answer",
    ))
}

//! A minimal HTTPS client: TLS 1.3 only, trusting exactly the profile's CA.
//!
//! One connection per request keeps it simple; the SDK makes two requests per
//! inference (attest, infer).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Largest response body accepted.
const MAX_RESPONSE: usize = 64 << 20;

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

/// HTTPS client bound to one gateway.
#[derive(Clone)]
pub struct HttpsClient {
    base: Uri,
    connector: TlsConnector,
    timeout: Duration,
}

impl HttpsClient {
    /// A client for `base_url` trusting only the CA certificate(s) in `ca_pem`.
    pub fn new(base_url: &str, ca_pem: &Path, timeout: Duration) -> Result<HttpsClient> {
        let base: Uri = base_url
            .parse()
            .with_context(|| format!("invalid gateway URL {base_url}"))?;
        if base.scheme_str() != Some("https") || base.host().is_none() {
            bail!("gateway URL must be https://HOST[:PORT], got {base_url}");
        }
        let mut roots = rustls::RootCertStore::empty();
        let mut reader = std::io::BufReader::new(
            std::fs::File::open(ca_pem)
                .with_context(|| format!("open CA certificate {}", ca_pem.display()))?,
        );
        for cert in rustls_pemfile::certs(&mut reader) {
            roots
                .add(cert.with_context(|| format!("parse {}", ca_pem.display()))?)
                .with_context(|| format!("add CA certificate from {}", ca_pem.display()))?;
        }
        if roots.is_empty() {
            bail!("no CA certificate in {}", ca_pem.display());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpsClient {
            base,
            connector: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// `GET path_and_query`.
    pub async fn get(&self, path_and_query: &str) -> Result<HttpResponse> {
        self.send(Method::GET, path_and_query, &[], Bytes::new())
            .await
    }

    /// `POST path` with headers and a body.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse> {
        self.send(Method::POST, path, headers, Bytes::from(body))
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse> {
        let host = self
            .base
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']']);
        let port = self.base.port_u16().unwrap_or(443);
        let work = async {
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to the gateway at {host}:{port}; is `cloister up` running?"
                    )
                })?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| anyhow!("invalid server name {host}"))?;
            let tls = self.connector.connect(name, tcp).await.context(
                "TLS handshake with the gateway failed (is the profile's CA the right one?)",
            )?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let authority = match self.base.port_u16() {
                Some(p) => format!("{}:{p}", self.base.host().unwrap_or_default()),
                None => self.base.host().unwrap_or_default().to_string(),
            };
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", authority);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(body))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the response failed: {e}"))?
                .to_bytes();
            Ok(HttpResponse { status, body })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| anyhow!("the gateway did not answer within {:?}", self.timeout))?
    }
}

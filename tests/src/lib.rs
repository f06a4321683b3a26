//! End-to-end harness: starts the real `cloister-enclave` and
//! `cloister-gateway` binaries on loopback, with a tap between them that
//! records — and on request tampers with — every frame the gateway forwards.
//! The tap stands for a hostile host: whatever it sees, the gateway saw.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister::datadir::{self, DataDir};
use cloister::profile::Profile;
use cloister_protocol::frame::{Frame, FrameKind};
use tokio::net::{UnixListener, UnixStream};

/// Directory holding the workspace binaries (beside this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for name in ["cloister", "cloister-enclave", "cloister-gateway"] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: build the binaries first (`cargo build --workspace --bins`), as scripts/test.sh does",
            dir.join(name).display()
        );
    }
    dir
}

/// Starts the real enclave binary on `socket` and waits until it listens.
fn spawn_enclave(bins: &Path, dir: &DataDir, socket: &Path) -> Child {
    let _ = std::fs::remove_file(socket);
    let mut enclave = Command::new(bins.join("cloister-enclave"))
        .arg("--policy")
        .arg(dir.policy())
        .arg("--socket")
        .arg(socket)
        .arg("--audit-dir")
        .arg(dir.audit())
        .arg("--sim-root")
        .arg(dir.sim_root())
        .arg("--ledger-dir")
        .arg(dir.ledger())
        .arg("--he-key-dir")
        .arg(dir.he_key_store())
        .stdin(Stdio::null())
        .spawn()
        .expect("start enclave");
    wait_until("enclave", &mut enclave, || socket.exists());
    enclave
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

/// How the tap treats frames.
#[derive(Debug, Clone)]
pub enum TapMode {
    /// Forward unchanged.
    Pass,
    /// Flip one byte of the SNP report inside the evidence (at `offset` in the report).
    FlipReportByte(usize),
    /// Answer attestation requests with this earlier evidence (a replay: wrong nonce).
    ReplayEvidence(Vec<u8>),
    /// Put the tap's own HPKE key into the real evidence, leaving the report as it is.
    SubstituteKey,
    /// Put the tap's own HPKE key into evidence re-signed by a SIMULATED root of the tap's own,
    /// with the real measurement: otherwise valid, but not from the pinned root.
    ForgeWithOwnRoot(Arc<cloister_attestation::SimRoot>),
    /// Remove the nonce from the evidence.
    StripNonce,
    /// Hold sealed responses in pairs and deliver each to the other request.
    SwapResponses,
    /// Forward every sealed request twice; the client sees the first answer.
    ReplaySealed,
    /// Never answer sealed requests (a hung enclave).
    Stall,
}

/// A pending response parked by [`TapMode::SwapResponses`].
type Parked = Arc<Mutex<Option<(Vec<u8>, tokio::sync::oneshot::Sender<Vec<u8>>)>>>;

/// Frames seen by the tap, in order: (direction, frame). `true` = gateway → enclave.
pub type Transcript = Arc<Mutex<Vec<(bool, Frame)>>>;

/// A running gateway + enclave pair.
pub struct Service {
    /// Data directory (temporary).
    pub dir: DataDir,
    _tmp: tempfile::TempDir,
    /// Gateway address.
    pub addr: SocketAddr,
    /// The client profile.
    pub profile: Profile,
    /// Everything that crossed the gateway–enclave link.
    pub transcript: Transcript,
    /// What the tap does.
    pub mode: Arc<Mutex<TapMode>>,
    enclave: Child,
    gateway: Child,
    runtime: tokio::runtime::Runtime,
}

fn wait_until(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} not ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Service {
    /// Starts a service with the default data directory contents.
    pub fn start() -> Service {
        Self::start_with(|_| {})
    }

    /// Starts a service; `edit` may change the data directory before start.
    pub fn start_with(edit: impl FnOnce(&DataDir)) -> Service {
        let bins = bin_dir();
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = DataDir::new(tmp.path()).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let prepared = datadir::prepare(&dir, addr).expect("prepare data dir");
        edit(&dir);
        let measurement =
            cloister_attestation::measure_file(&bins.join("cloister-enclave")).unwrap();
        let profile = Profile {
            gateway_url: datadir::gateway_url(addr),
            ca_cert: dir.ca_cert(),
            trust_root: dir.trust_root(),
            allow_simulated: true,
            require_sandbox: false,
            forbid_smt: false,
            expected_measurements: vec![hex::encode(measurement)],
            tenant: "dev".into(),
            api_key: prepared.api_key,
        };
        let enclave_socket = dir.root.join("run").join("real-enclave.sock");
        let enclave = spawn_enclave(&bins, &dir, &enclave_socket);

        // The tap listens where the gateway expects the enclave.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let transcript: Transcript = Arc::default();
        let mode = Arc::new(Mutex::new(TapMode::Pass));
        let tap_socket = dir.socket();
        std::fs::create_dir_all(tap_socket.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&tap_socket);
        let listener = {
            let _guard = runtime.enter();
            UnixListener::bind(&tap_socket).expect("bind tap socket")
        };
        runtime.spawn(tap(
            listener,
            enclave_socket.clone(),
            transcript.clone(),
            mode.clone(),
        ));

        let mut gateway = Command::new(bins.join("cloister-gateway"))
            .arg("--config")
            .arg(dir.gateway_config())
            .stdin(Stdio::null())
            .spawn()
            .expect("start gateway");
        wait_until("gateway", &mut gateway, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Service {
            dir,
            _tmp: tmp,
            addr,
            profile,
            transcript,
            mode,
            enclave,
            gateway,
            runtime,
        }
    }

    /// Runs a future on the harness runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Sets the tap's behaviour.
    pub fn set_mode(&self, mode: TapMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Frames of one kind seen so far.
    pub fn frames(&self, kind: FrameKind) -> Vec<Vec<u8>> {
        self.transcript
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| f.kind == kind)
            .map(|(_, f)| f.payload.clone())
            .collect()
    }

    /// Every byte that crossed the tap.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.transcript
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, f)| f.payload.clone())
            .collect()
    }

    /// True while both processes run.
    pub fn alive(&mut self) -> bool {
        matches!(self.enclave.try_wait(), Ok(None)) && matches!(self.gateway.try_wait(), Ok(None))
    }

    /// Sends raw bytes over a fresh TLS connection to the gateway and reads until it closes
    /// (or 10 s pass); returns the status line and the body. For requests a well-behaved
    /// client would not send: stalled bodies, lying content lengths.
    pub fn raw_https(&self, request: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&self.profile.ca_cert).unwrap();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let addr = self.addr;
        let request = request.to_string();
        self.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(request.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
            let text = String::from_utf8_lossy(&buf).to_string();
            let status = text.lines().next().unwrap_or_default().to_string();
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            (status, body)
        })
    }

    /// The audit directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.audit()
    }

    /// Stops the enclave with SIGTERM and starts it again on the same data directory (new
    /// keys, same policy, ledger and audit log); the gateway keeps running.
    pub fn restart_enclave(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.enclave.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = self.enclave.wait().expect("wait enclave");
        assert!(status.success(), "enclave stopped uncleanly: {status}");
        let socket = self.dir.root.join("run").join("real-enclave.sock");
        self.enclave = spawn_enclave(&bin_dir(), &self.dir, &socket);
    }

    /// Kills the enclave with SIGKILL (no clean-up of any kind: a crash) and starts it again on
    /// the same data directory; the gateway keeps running. Returns once the new enclave listens.
    pub fn crash_enclave(&mut self) {
        let _ = self.enclave.kill();
        let _ = self.enclave.wait();
        let socket = self.dir.root.join("run").join("real-enclave.sock");
        self.enclave = spawn_enclave(&bin_dir(), &self.dir, &socket);
    }

    /// Stops both processes with SIGTERM and waits for them.
    pub fn stop(&mut self) -> (std::process::ExitStatus, std::process::ExitStatus) {
        let term = |c: &Child| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        };
        term(&self.gateway);
        let g = self.gateway.wait().expect("wait gateway");
        term(&self.enclave);
        let e = self.enclave.wait().expect("wait enclave");
        (g, e)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.enclave.kill();
        let _ = self.gateway.wait();
        let _ = self.enclave.wait();
    }
}

async fn tap(
    listener: UnixListener,
    enclave: PathBuf,
    transcript: Transcript,
    mode: Arc<Mutex<TapMode>>,
) {
    let parked: Parked = Arc::default();
    while let Ok((mut from_gateway, _)) = listener.accept().await {
        let enclave = enclave.clone();
        let transcript = transcript.clone();
        let mode = mode.clone();
        let parked = parked.clone();
        tokio::spawn(async move {
            let Ok(mut to_enclave) = UnixStream::connect(&enclave).await else {
                return;
            };
            while let Ok(request) = Frame::read_from(&mut from_gateway).await {
                transcript.lock().unwrap().push((true, request.clone()));
                let current = mode.lock().unwrap().clone();
                let answer = match (&current, request.kind) {
                    (TapMode::ReplayEvidence(old), FrameKind::AttestRequest) => {
                        Frame::new(FrameKind::Evidence, old.clone())
                    }
                    (TapMode::Stall, FrameKind::SealedRequest) => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    _ => {
                        if request.write_to(&mut to_enclave).await.is_err() {
                            return;
                        }
                        let Ok(mut answer) = Frame::read_from(&mut to_enclave).await else {
                            return;
                        };
                        match (&current, answer.kind) {
                            (TapMode::FlipReportByte(offset), FrameKind::Evidence) => {
                                answer.payload = flip_report_byte(&answer.payload, *offset);
                            }
                            (TapMode::SubstituteKey, FrameKind::Evidence) => {
                                answer.payload = forge_evidence(&answer.payload, None);
                            }
                            (TapMode::ForgeWithOwnRoot(root), FrameKind::Evidence) => {
                                answer.payload = forge_evidence(&answer.payload, Some(root));
                            }
                            (TapMode::StripNonce, FrameKind::Evidence) => {
                                let mut doc: serde_json::Value =
                                    serde_json::from_slice(&answer.payload).unwrap();
                                doc["nonce"] = serde_json::Value::String(String::new());
                                answer.payload = serde_json::to_vec(&doc).unwrap();
                            }
                            (TapMode::SwapResponses, FrameKind::SealedResponse) => {
                                answer.payload = swap(&parked, answer.payload).await;
                            }
                            (TapMode::ReplaySealed, FrameKind::SealedResponse) => {
                                let second = match request.write_to(&mut to_enclave).await {
                                    Ok(()) => Frame::read_from(&mut to_enclave).await.ok(),
                                    Err(_) => None,
                                };
                                if let Some(second) = second {
                                    transcript.lock().unwrap().push((true, request.clone()));
                                    transcript.lock().unwrap().push((false, second));
                                }
                            }
                            _ => {}
                        }
                        answer
                    }
                };
                transcript.lock().unwrap().push((false, answer.clone()));
                if answer.write_to(&mut from_gateway).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Exchanges this response with the next one to arrive (two concurrent clients).
async fn swap(parked: &Parked, mine: Vec<u8>) -> Vec<u8> {
    let partner = parked.lock().unwrap().take();
    match partner {
        Some((theirs, sender)) => {
            let _ = sender.send(mine);
            theirs
        }
        None => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            *parked.lock().unwrap() = Some((mine.clone(), tx));
            match tokio::time::timeout(Duration::from_secs(20), rx).await {
                Ok(Ok(theirs)) => theirs,
                _ => mine,
            }
        }
    }
}

/// Replaces the evidence's HPKE key with a fresh one the tap holds. With `root`, the report is
/// re-made for the new binding (same measurement) and signed by `root`'s VCEK.
fn forge_evidence(
    evidence_json: &[u8],
    root: Option<&Arc<cloister_attestation::SimRoot>>,
) -> Vec<u8> {
    use cloister_attestation::{
        report_data, AttestationProvider, AttestationReport, EvidenceBundle, SimProvider,
    };
    let mut bundle =
        EvidenceBundle::from_json(std::str::from_utf8(evidence_json).unwrap()).unwrap();
    let own = cloister_seal::generate_key_config(1).unwrap();
    bundle.hpke_key_config = cloister_seal::encode_key_config(&own).unwrap();
    if let Some(root) = root {
        let measurement = AttestationReport::from_bytes(&bundle.report)
            .unwrap()
            .measurement;
        let provider = SimProvider::new((**root).clone(), measurement);
        let raw = provider.report(report_data(&bundle.binding())).unwrap();
        bundle = EvidenceBundle::new("sim", true, raw, bundle.binding());
    }
    bundle.to_json().unwrap().into_bytes()
}

/// Flips one byte of the hex-encoded `report` field of an evidence bundle.
pub fn flip_report_byte(evidence_json: &[u8], offset: usize) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(evidence_json).expect("evidence JSON");
    let report_hex = doc["report"].as_str().expect("report field").to_string();
    let mut report = hex::decode(report_hex).expect("report hex");
    report[offset] ^= 0x01;
    doc["report"] = serde_json::Value::String(hex::encode(report));
    serde_json::to_vec(&doc).unwrap()
}

/// `n` held-out digits starting at row `from`, as the `{"input": ...}` of the digits models.
pub fn heldout_rows(
    from: usize,
    n: usize,
) -> std::collections::BTreeMap<String, cloister_protocol::tensor::WireTensor> {
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(heldout_path()).unwrap()).unwrap();
    let rows = data["input"].as_array().unwrap()[from..from + n].to_vec();
    cloister_protocol::tensor::parse_inputs(&serde_json::json!({ "input": rows })).unwrap()
}

/// Path of the held-out digits fixture.
pub fn heldout_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/heldout.json")
}

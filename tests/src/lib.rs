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
}

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
            expected_measurements: vec![hex::encode(measurement)],
            tenant: "dev".into(),
            api_key: prepared.api_key,
        };
        let enclave_socket = dir.root.join("run").join("real-enclave.sock");
        let mut enclave = Command::new(bins.join("cloister-enclave"))
            .arg("--policy")
            .arg(dir.policy())
            .arg("--socket")
            .arg(&enclave_socket)
            .arg("--audit-dir")
            .arg(dir.audit())
            .arg("--sim-root")
            .arg(dir.sim_root())
            .stdin(Stdio::null())
            .spawn()
            .expect("start enclave");
        wait_until("enclave", &mut enclave, || enclave_socket.exists());

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

    /// The audit directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.audit()
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
    while let Ok((mut from_gateway, _)) = listener.accept().await {
        let enclave = enclave.clone();
        let transcript = transcript.clone();
        let mode = mode.clone();
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
                    _ => {
                        if request.write_to(&mut to_enclave).await.is_err() {
                            return;
                        }
                        let Ok(mut answer) = Frame::read_from(&mut to_enclave).await else {
                            return;
                        };
                        if let (TapMode::FlipReportByte(offset), FrameKind::Evidence) =
                            (&current, answer.kind)
                        {
                            answer.payload = flip_report_byte(&answer.payload, *offset);
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

/// Flips one byte of the hex-encoded `report` field of an evidence bundle.
pub fn flip_report_byte(evidence_json: &[u8], offset: usize) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(evidence_json).expect("evidence JSON");
    let report_hex = doc["report"].as_str().expect("report field").to_string();
    let mut report = hex::decode(report_hex).expect("report hex");
    report[offset] ^= 0x01;
    doc["report"] = serde_json::Value::String(hex::encode(report));
    serde_json::to_vec(&doc).unwrap()
}

/// Path of the held-out digits fixture.
pub fn heldout_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/heldout.json")
}

//! The gateway's limits against real processes: concurrent clients are all served; a client
//! that stalls mid-body and an enclave that never answers each get a typed `timeout`, and the
//! service keeps serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister::sdk::{Client, ClientError};
use cloister_e2e::{heldout_rows, Service, TapMode};
use cloister_protocol::error::ErrorCode;
use cloister_protocol::tensor::WireTensor;

fn rows(n: usize) -> BTreeMap<String, WireTensor> {
    heldout_rows(0, n)
}

/// A service whose gateway gives up after 1.5 s on slow clients and slow enclaves.
fn impatient() -> Service {
    Service::start_with(|dir| {
        let path = dir.gateway_config();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("request_timeout_ms = 10000", "request_timeout_ms = 1500")
            .replace("enclave_timeout_ms = 30000", "enclave_timeout_ms = 1500");
        std::fs::write(path, text).unwrap();
    })
}

#[test]
fn concurrent_clients_are_all_served() {
    let svc = Service::start();
    let client = Arc::new(Client::new(svc.profile.clone()).unwrap());
    svc.block_on(client.verified_evidence()).unwrap();
    let results = svc.block_on(async {
        let tasks: Vec<_> = (1..=8)
            .map(|n| {
                let c = client.clone();
                tokio::spawn(async move { c.infer("digits", rows(n)).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(r.response.outputs["probabilities"].shape, vec![i + 1, 10]);
    }
    let summary = cloister_audit::verify_dir(&svc.audit_dir()).unwrap();
    assert_eq!(summary.entries, 8);
}

#[test]
fn a_hung_enclave_gives_a_typed_timeout_and_the_gateway_recovers() {
    let svc = impatient();
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.block_on(client.verified_evidence()).unwrap();
    svc.set_mode(TapMode::Stall);
    let started = Instant::now();
    match svc.block_on(client.infer("digits", rows(1))) {
        Err(ClientError::Gateway { status, error }) => {
            assert_eq!((status, error.code), (504, ErrorCode::Timeout));
        }
        Err(e) => panic!("expected a gateway timeout, got {e}"),
        Ok(_) => panic!("a stalled enclave answered"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    svc.set_mode(TapMode::Pass);
    svc.block_on(client.infer("digits", rows(1)))
        .expect("serving again");
}

#[test]
fn a_client_that_stalls_mid_body_gets_a_typed_timeout() {
    let mut svc = impatient();
    let token = cloister_protocol::auth::gateway_token(&svc.profile.api_key);
    let (status_line, body) = svc.raw_https(&format!(
        "POST /v1/infer HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: message/ohttp-req\r\n\
         authorization: Bearer {token}\r\ncontent-length: 1000\r\n\r\npartial body"
    ));
    assert!(status_line.contains("504"), "{status_line}");
    assert!(body.contains("\"timeout\""), "{body}");
    assert!(svc.alive());
    let client = Client::new(svc.profile.clone()).unwrap();
    svc.block_on(client.infer("digits", rows(1)))
        .expect("still serving");
}

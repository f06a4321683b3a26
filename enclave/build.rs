//! Compiles the seccomp allow-lists into BPF at build time, so the binary embeds exactly the
//! reviewed lists and never parses JSON at run time:
//! `policies/seccomp/enclave.json` (the broker: `enclave`, `enclave_clone3`) and
//! `policies/seccomp/engine-worker.json` (the engine zygote and each engine worker:
//! `engine_zygote`, `engine_worker`), seccompiler's JSON format.
//!
//! Output in `OUT_DIR`: `seccomp_<filter>.bpf` for each filter, as the kernel's
//! `struct sock_filter` array (8 bytes per instruction: code u16, jt u8, jf u8, k u32, little
//! endian). seccompiler 0.5's `BpfProgram` is a `Vec<libc::sock_filter>`, which has no serde
//! implementation, so this fixed layout replaces bincode and needs no extra dependency.
//! On an architecture without an allow-list the files are empty and the enclave reports seccomp as
//! unavailable (so `enforce` mode refuses to start).

use std::path::PathBuf;

/// Each JSON file and the filters it must define.
const FILES: [(&str, &[&str]); 2] = [
    ("enclave.json", &["enclave", "enclave_clone3"]),
    ("engine-worker.json", &["engine_zygote", "engine_worker"]),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let os = std::env::var("CARGO_CFG_TARGET_OS").expect("CARGO_CFG_TARGET_OS");
    let supported = arch == "x86_64" && os == "linux";
    if !supported {
        println!(
            "cargo:warning=no seccomp allow-list for {arch}-{os}: the enclave will report seccomp as unavailable"
        );
    }
    for (file, filters) in FILES {
        let json = manifest.join("../policies/seccomp").join(file);
        println!("cargo:rerun-if-changed={}", json.display());
        let programs: Vec<Vec<u8>> = if supported {
            let f = std::fs::File::open(&json)
                .unwrap_or_else(|e| panic!("open {}: {e}", json.display()));
            let map = seccompiler::compile_from_json(f, seccompiler::TargetArch::x86_64)
                .unwrap_or_else(|e| panic!("compile {}: {e}", json.display()));
            filters
                .iter()
                .map(|name| {
                    let prog = map
                        .get(*name)
                        .unwrap_or_else(|| panic!("{} has no filter \"{name}\"", json.display()));
                    let mut bytes = Vec::with_capacity(prog.len() * 8);
                    for insn in prog {
                        bytes.extend_from_slice(&insn.code.to_le_bytes());
                        bytes.push(insn.jt);
                        bytes.push(insn.jf);
                        bytes.extend_from_slice(&insn.k.to_le_bytes());
                    }
                    bytes
                })
                .collect()
        } else {
            vec![Vec::new(); filters.len()]
        };
        for (name, bytes) in filters.iter().zip(programs) {
            std::fs::write(out.join(format!("seccomp_{name}.bpf")), bytes).expect("write BPF");
        }
    }
}

//! Compiles the enclave's seccomp allow-list (`policies/seccomp/enclave.json`, seccompiler's JSON
//! format) into BPF at build time, so the binary embeds exactly the reviewed list and never parses
//! JSON at run time.
//!
//! Output in `OUT_DIR`: `seccomp_<filter>.bpf` for each filter in the file, as the kernel's
//! `struct sock_filter` array (8 bytes per instruction: code u16, jt u8, jf u8, k u32, little
//! endian). seccompiler 0.5's `BpfProgram` is a `Vec<libc::sock_filter>`, which has no serde
//! implementation, so this fixed layout replaces bincode and needs no extra dependency.
//! On an architecture without an allow-list the files are empty and the enclave reports seccomp as
//! unavailable (so `enforce` mode refuses to start).

use std::path::PathBuf;

const FILTERS: [&str; 2] = ["enclave", "enclave_clone3"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let json = manifest.join("../policies/seccomp/enclave.json");
    println!("cargo:rerun-if-changed={}", json.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let os = std::env::var("CARGO_CFG_TARGET_OS").expect("CARGO_CFG_TARGET_OS");

    let programs = if arch == "x86_64" && os == "linux" {
        let file =
            std::fs::File::open(&json).unwrap_or_else(|e| panic!("open {}: {e}", json.display()));
        let map = seccompiler::compile_from_json(file, seccompiler::TargetArch::x86_64)
            .unwrap_or_else(|e| panic!("compile {}: {e}", json.display()));
        FILTERS
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
        println!(
            "cargo:warning=no seccomp allow-list for {arch}-{os}: the enclave will report seccomp as unavailable"
        );
        vec![Vec::new(); FILTERS.len()]
    };
    for (name, bytes) in FILTERS.iter().zip(programs) {
        std::fs::write(out.join(format!("seccomp_{name}.bpf")), bytes).expect("write BPF");
    }
}

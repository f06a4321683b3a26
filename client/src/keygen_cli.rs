//! `cloister keygen --he --out DIR`: generate the client's TFHE keys for homomorphic mode.
//!
//! Writes `DIR/he-client.key` (the secret client key; never leaves this machine; created with
//! mode 0600) and `DIR/he-server.key` (the compressed server key the tenant uploads), and
//! prints each step with its timing, because generating the server key takes seconds.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// File name of the secret client key inside the output directory.
pub const CLIENT_KEY_FILE: &str = "he-client.key";
/// File name of the compressed server key inside the output directory.
pub const SERVER_KEY_FILE: &str = "he-server.key";

/// Generate and write the keys. Refuses to overwrite existing key files.
pub fn run(he: bool, out: &Path) -> Result<ExitCode> {
    if !he {
        bail!("only homomorphic keys exist so far: pass --he");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let client_path = out.join(CLIENT_KEY_FILE);
    let server_path = out.join(SERVER_KEY_FILE);
    for path in [&client_path, &server_path] {
        if path.exists() {
            bail!("{} exists; refusing to overwrite a key", path.display());
        }
    }
    let total = Instant::now();
    let keys = cloister_he::client::generate_keys(&mut |line| eprintln!("keygen: {line}"))?;
    let client_bytes = keys.client.to_bytes()?;
    write_new(&client_path, &client_bytes, true)?;
    write_new(&server_path, &keys.server_key_bytes, false)?;
    eprintln!(
        "keygen: wrote {} ({} bytes, secret) and {} ({:.1} MiB) in {:.2} s total",
        client_path.display(),
        client_bytes.len(),
        server_path.display(),
        keys.server_key_bytes.len() as f64 / (1024.0 * 1024.0),
        total.elapsed().as_secs_f64()
    );
    println!("key id {}", hex::encode(keys.client.key_id()));
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

//! The AMD SEV-SNP `ATTESTATION_REPORT` structure, byte for byte.
//!
//! This module exists because the report is the one artefact the AMD firmware signs: everything
//! the verifier believes about the enclave is read out of these 1184 bytes, so their layout is
//! written down here once, with every offset from the AMD SEV-SNP ABI specification (table
//! "ATTESTATION_REPORT Structure"), and both the parser and the serialiser use the same table.
//!
//! We own this codec instead of using `sev::firmware::guest::AttestationReport` because the
//! `sev` 8 decoder guesses the CPU generation (and so the TCB layout) from heuristics on the chip
//! id, and folds reserved bytes away; here every field is a fixed offset, reserved bytes are kept
//! as zero, and the signature is always checked over the *received* bytes `0x000..0x2A0`, never
//! over a re-encoding. A test cross-checks this parser against the `sev` crate's on a real
//! report.
//!
//! All multi-byte integers are little-endian. The signature is ECDSA P-384 over SHA-384 of bytes
//! `0x000..0x2A0`; `r` and `s` are stored little-endian, each zero-padded to 72 bytes.

use p384::ecdsa::{signature::Verifier, Signature, VerifyingKey};

use crate::error::{Error, Result};

/// Size of the report in bytes.
pub const REPORT_LEN: usize = 0x4A0;
/// End (exclusive) of the signed range; the signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the signature field.
pub const SIGNATURE_OFFSET: usize = 0x2A0;
/// Length of one little-endian, zero-padded signature component (`r` or `s`).
pub const SIG_COMPONENT_LEN: usize = 72;
/// SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one AMD defines.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Field offsets, from the AMD SEV-SNP ABI specification.
pub mod offsets {
    #![allow(missing_docs)]
    pub const VERSION: usize = 0x00;
    pub const GUEST_SVN: usize = 0x04;
    pub const POLICY: usize = 0x08;
    pub const FAMILY_ID: usize = 0x10;
    pub const IMAGE_ID: usize = 0x20;
    pub const VMPL: usize = 0x30;
    pub const SIGNATURE_ALGO: usize = 0x34;
    pub const CURRENT_TCB: usize = 0x38;
    pub const PLATFORM_INFO: usize = 0x40;
    pub const FLAGS: usize = 0x48;
    pub const REPORT_DATA: usize = 0x50;
    pub const MEASUREMENT: usize = 0x90;
    pub const HOST_DATA: usize = 0xC0;
    pub const ID_KEY_DIGEST: usize = 0xE0;
    pub const AUTHOR_KEY_DIGEST: usize = 0x110;
    pub const REPORT_ID: usize = 0x140;
    pub const REPORT_ID_MA: usize = 0x160;
    pub const REPORTED_TCB: usize = 0x180;
    pub const CPUID_FAM_ID: usize = 0x188;
    pub const CPUID_MOD_ID: usize = 0x189;
    pub const CPUID_STEP: usize = 0x18A;
    pub const CHIP_ID: usize = 0x1A0;
    pub const COMMITTED_TCB: usize = 0x1E0;
    pub const CURRENT_BUILD: usize = 0x1E8;
    pub const CURRENT_MINOR: usize = 0x1E9;
    pub const CURRENT_MAJOR: usize = 0x1EA;
    pub const COMMITTED_BUILD: usize = 0x1EC;
    pub const COMMITTED_MINOR: usize = 0x1ED;
    pub const COMMITTED_MAJOR: usize = 0x1EE;
    pub const LAUNCH_TCB: usize = 0x1F0;
    pub const LAUNCH_MIT_VECTOR: usize = 0x1F8;
    pub const CURRENT_MIT_VECTOR: usize = 0x200;
    pub const SIGNATURE: usize = 0x2A0;
}

/// Guest policy bits (the POLICY field, ABI spec "Guest Policy Structure").
pub mod policy {
    /// SMT allowed.
    pub const SMT: u64 = 1 << 16;
    /// Reserved, must be one.
    pub const RESERVED_MBO: u64 = 1 << 17;
    /// Association with a migration agent allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Debugging (host can read guest memory) allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Guest may run on one socket only.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
}

/// How the 8 bytes of a TCB_VERSION are split into components; it differs by CPU generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcbLayout {
    /// Milan and Genoa: `[bootloader, tee, rsvd x4, snp, microcode]`.
    MilanGenoa,
    /// Turin: `[fmc, bootloader, tee, snp, rsvd x3, microcode]`.
    Turin,
}

/// A raw TCB_VERSION value as it sits in the report (little-endian u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcbVersion(pub u64);

/// The security patch levels (SPLs) of the firmware components, decoded from a [`TcbVersion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Tcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later only).
    pub fmc: Option<u8>,
}

impl TcbVersion {
    /// Splits the raw value into components according to `layout`.
    pub fn decode(self, layout: TcbLayout) -> Tcb {
        let b = self.0.to_le_bytes();
        match layout {
            TcbLayout::MilanGenoa => Tcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            },
            TcbLayout::Turin => Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

impl Tcb {
    /// Packs the components into a raw TCB_VERSION (reserved bytes zero).
    pub fn encode(&self, layout: TcbLayout) -> TcbVersion {
        let mut b = [0u8; 8];
        match layout {
            TcbLayout::MilanGenoa => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
                b[7] = self.microcode;
            }
            TcbLayout::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
                b[7] = self.microcode;
            }
        }
        TcbVersion(u64::from_le_bytes(b))
    }

    /// True when every component is at least the corresponding one of `min`
    /// (an `fmc` minimum is only met by a TCB that has an `fmc` component).
    pub fn meets(&self, min: &Tcb) -> bool {
        let fmc_ok = match (min.fmc, self.fmc) {
            (None, _) => true,
            (Some(m), Some(v)) => v >= m,
            (Some(_), None) => false,
        };
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && fmc_ok
    }
}

impl std::fmt::Display for Tcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bootloader {} / tee {} / snp {} / microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, " / fmc {fmc}")?;
        }
        Ok(())
    }
}

/// A firmware version triple (build, minor, major as stored at 0x1E8 / 0x1EC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirmwareVersion {
    /// Build number.
    pub build: u8,
    /// Minor version.
    pub minor: u8,
    /// Major version.
    pub major: u8,
}

/// A decoded SEV-SNP attestation report. Reserved bytes are not kept: [`Self::to_bytes`] writes
/// them as zero, so a report with non-zero reserved bytes does not round-trip (its signature is
/// always checked over the received bytes, see [`verify_report_signature`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// Report format version (2, 3 or 5 today).
    pub version: u32,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Guest policy; see [`policy`].
    pub policy: u64,
    /// Family ID from the ID block.
    pub family_id: [u8; 16],
    /// Image ID from the ID block.
    pub image_id: [u8; 16],
    /// VMPL that requested the report.
    pub vmpl: u32,
    /// Signature algorithm (1 = ECDSA P-384 / SHA-384).
    pub signature_algo: u32,
    /// Current TCB.
    pub current_tcb: TcbVersion,
    /// Platform information bits.
    pub platform_info: u64,
    /// Flags: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2..4 SIGNING_KEY (0 = VCEK).
    pub flags: u32,
    /// Guest-provided data; Cloister puts [`crate::binding::report_data`] here.
    pub report_data: [u8; 64],
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host-provided data.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID public key.
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author public key.
    pub author_key_digest: [u8; 48],
    /// Report ID of this guest.
    pub report_id: [u8; 32],
    /// Report ID of the migration agent.
    pub report_id_ma: [u8; 32],
    /// The TCB the report is signed for (the VCEK is derived from it).
    pub reported_tcb: TcbVersion,
    /// CPUID family (version 3 and later; 0 before).
    pub cpuid_fam_id: u8,
    /// CPUID model (version 3 and later; 0 before).
    pub cpuid_mod_id: u8,
    /// CPUID stepping (version 3 and later; 0 before).
    pub cpuid_step: u8,
    /// Chip identifier (equals the VCEK hwID extension).
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: TcbVersion,
    /// Current firmware version.
    pub current: FirmwareVersion,
    /// Committed firmware version.
    pub committed: FirmwareVersion,
    /// TCB at launch.
    pub launch_tcb: TcbVersion,
    /// Launch mitigation vector (version 5 and later; 0 before).
    pub launch_mit_vector: u64,
    /// Current mitigation vector (version 5 and later; 0 before).
    pub current_mit_vector: u64,
    /// The signature area, 0x2A0..0x4A0: r (72 bytes LE), s (72 bytes LE), reserved.
    pub signature: [u8; 512],
}

impl Default for AttestationReport {
    fn default() -> Self {
        Self {
            version: 0,
            guest_svn: 0,
            policy: 0,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: 0,
            current_tcb: TcbVersion::default(),
            platform_info: 0,
            flags: 0,
            report_data: [0; 64],
            measurement: [0; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [0; 32],
            report_id_ma: [0; 32],
            reported_tcb: TcbVersion::default(),
            cpuid_fam_id: 0,
            cpuid_mod_id: 0,
            cpuid_step: 0,
            chip_id: [0; 64],
            committed_tcb: TcbVersion::default(),
            current: FirmwareVersion::default(),
            committed: FirmwareVersion::default(),
            launch_tcb: TcbVersion::default(),
            launch_mit_vector: 0,
            current_mit_vector: 0,
            signature: [0; 512],
        }
    }
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[off..off + N]);
    out
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

/// CPUID family of Turin parts (Zen 5).
const FAMILY_TURIN: u8 = 0x1A;

impl AttestationReport {
    /// Parses a report. Fails unless it is exactly [`REPORT_LEN`] bytes, `version >= 2` and
    /// `signature_algo == 1`. Does not verify the signature.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        use offsets as o;
        if b.len() != REPORT_LEN {
            return Err(Error::ReportLength {
                expected: REPORT_LEN,
                actual: b.len(),
            });
        }
        let version = u32_at(b, o::VERSION);
        if version < 2 {
            return Err(Error::UnsupportedReportVersion(version));
        }
        let signature_algo = u32_at(b, o::SIGNATURE_ALGO);
        if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(Error::UnsupportedReportSignatureAlgo(signature_algo));
        }
        let v3 = version >= 3;
        let v5 = version >= 5;
        Ok(Self {
            version,
            guest_svn: u32_at(b, o::GUEST_SVN),
            policy: u64_at(b, o::POLICY),
            family_id: arr(b, o::FAMILY_ID),
            image_id: arr(b, o::IMAGE_ID),
            vmpl: u32_at(b, o::VMPL),
            signature_algo,
            current_tcb: TcbVersion(u64_at(b, o::CURRENT_TCB)),
            platform_info: u64_at(b, o::PLATFORM_INFO),
            flags: u32_at(b, o::FLAGS),
            report_data: arr(b, o::REPORT_DATA),
            measurement: arr(b, o::MEASUREMENT),
            host_data: arr(b, o::HOST_DATA),
            id_key_digest: arr(b, o::ID_KEY_DIGEST),
            author_key_digest: arr(b, o::AUTHOR_KEY_DIGEST),
            report_id: arr(b, o::REPORT_ID),
            report_id_ma: arr(b, o::REPORT_ID_MA),
            reported_tcb: TcbVersion(u64_at(b, o::REPORTED_TCB)),
            cpuid_fam_id: if v3 { b[o::CPUID_FAM_ID] } else { 0 },
            cpuid_mod_id: if v3 { b[o::CPUID_MOD_ID] } else { 0 },
            cpuid_step: if v3 { b[o::CPUID_STEP] } else { 0 },
            chip_id: arr(b, o::CHIP_ID),
            committed_tcb: TcbVersion(u64_at(b, o::COMMITTED_TCB)),
            current: FirmwareVersion {
                build: b[o::CURRENT_BUILD],
                minor: b[o::CURRENT_MINOR],
                major: b[o::CURRENT_MAJOR],
            },
            committed: FirmwareVersion {
                build: b[o::COMMITTED_BUILD],
                minor: b[o::COMMITTED_MINOR],
                major: b[o::COMMITTED_MAJOR],
            },
            launch_tcb: TcbVersion(u64_at(b, o::LAUNCH_TCB)),
            launch_mit_vector: if v5 {
                u64_at(b, o::LAUNCH_MIT_VECTOR)
            } else {
                0
            },
            current_mit_vector: if v5 {
                u64_at(b, o::CURRENT_MIT_VECTOR)
            } else {
                0
            },
            signature: arr(b, o::SIGNATURE),
        })
    }

    /// Serialises the report to its 1184-byte wire form (reserved bytes zero).
    pub fn to_bytes(&self) -> [u8; REPORT_LEN] {
        use offsets as o;
        let mut b = [0u8; REPORT_LEN];
        fn put(b: &mut [u8], off: usize, v: &[u8]) {
            b[off..off + v.len()].copy_from_slice(v);
        }
        put(&mut b, o::VERSION, &self.version.to_le_bytes());
        put(&mut b, o::GUEST_SVN, &self.guest_svn.to_le_bytes());
        put(&mut b, o::POLICY, &self.policy.to_le_bytes());
        put(&mut b, o::FAMILY_ID, &self.family_id);
        put(&mut b, o::IMAGE_ID, &self.image_id);
        put(&mut b, o::VMPL, &self.vmpl.to_le_bytes());
        put(
            &mut b,
            o::SIGNATURE_ALGO,
            &self.signature_algo.to_le_bytes(),
        );
        put(&mut b, o::CURRENT_TCB, &self.current_tcb.0.to_le_bytes());
        put(&mut b, o::PLATFORM_INFO, &self.platform_info.to_le_bytes());
        put(&mut b, o::FLAGS, &self.flags.to_le_bytes());
        put(&mut b, o::REPORT_DATA, &self.report_data);
        put(&mut b, o::MEASUREMENT, &self.measurement);
        put(&mut b, o::HOST_DATA, &self.host_data);
        put(&mut b, o::ID_KEY_DIGEST, &self.id_key_digest);
        put(&mut b, o::AUTHOR_KEY_DIGEST, &self.author_key_digest);
        put(&mut b, o::REPORT_ID, &self.report_id);
        put(&mut b, o::REPORT_ID_MA, &self.report_id_ma);
        put(&mut b, o::REPORTED_TCB, &self.reported_tcb.0.to_le_bytes());
        if self.version >= 3 {
            b[o::CPUID_FAM_ID] = self.cpuid_fam_id;
            b[o::CPUID_MOD_ID] = self.cpuid_mod_id;
            b[o::CPUID_STEP] = self.cpuid_step;
        }
        put(&mut b, o::CHIP_ID, &self.chip_id);
        put(
            &mut b,
            o::COMMITTED_TCB,
            &self.committed_tcb.0.to_le_bytes(),
        );
        b[o::CURRENT_BUILD] = self.current.build;
        b[o::CURRENT_MINOR] = self.current.minor;
        b[o::CURRENT_MAJOR] = self.current.major;
        b[o::COMMITTED_BUILD] = self.committed.build;
        b[o::COMMITTED_MINOR] = self.committed.minor;
        b[o::COMMITTED_MAJOR] = self.committed.major;
        put(&mut b, o::LAUNCH_TCB, &self.launch_tcb.0.to_le_bytes());
        if self.version >= 5 {
            put(
                &mut b,
                o::LAUNCH_MIT_VECTOR,
                &self.launch_mit_vector.to_le_bytes(),
            );
            put(
                &mut b,
                o::CURRENT_MIT_VECTOR,
                &self.current_mit_vector.to_le_bytes(),
            );
        }
        put(&mut b, o::SIGNATURE, &self.signature);
        b
    }

    /// The TCB layout of this report's CPU: Turin for version >= 3 reports with CPUID family
    /// 0x1A, otherwise Milan/Genoa (version 2 reports carry no CPUID; Cloister treats them as
    /// Milan/Genoa, which is what version-2 firmware runs on).
    pub fn tcb_layout(&self) -> TcbLayout {
        if self.version >= 3 && self.cpuid_fam_id == FAMILY_TURIN {
            TcbLayout::Turin
        } else {
            TcbLayout::MilanGenoa
        }
    }

    /// Decodes one of this report's TCB fields with the report's own layout.
    pub fn tcb(&self, v: TcbVersion) -> Tcb {
        v.decode(self.tcb_layout())
    }

    /// Whether the guest policy allows debugging (bit 19).
    pub fn debug_allowed(&self) -> bool {
        self.policy & policy::DEBUG != 0
    }

    /// Whether the guest policy allows a migration agent (bit 18).
    pub fn migration_agent_allowed(&self) -> bool {
        self.policy & policy::MIGRATE_MA != 0
    }

    /// The signature as a P-384 ECDSA signature. Fails unless the padding bytes of `r` and `s`
    /// (48..72 of each) are zero and both scalars are in range.
    pub fn ecdsa_signature(&self) -> Result<Signature> {
        decode_signature(&self.signature[..2 * SIG_COMPONENT_LEN])
    }
}

/// Decodes AMD's `r || s` (72 bytes each, little-endian, zero-padded) into a P-384 signature.
pub fn decode_signature(rs: &[u8]) -> Result<Signature> {
    if rs.len() != 2 * SIG_COMPONENT_LEN {
        return Err(Error::MalformedReportSignature(format!(
            "signature area is {} bytes, expected {}",
            rs.len(),
            2 * SIG_COMPONENT_LEN
        )));
    }
    let (r, s) = rs.split_at(SIG_COMPONENT_LEN);
    let be = |le: &[u8], name: &str| -> Result<[u8; 48]> {
        if le[48..].iter().any(|&x| x != 0) {
            return Err(Error::MalformedReportSignature(format!(
                "{name} has non-zero padding"
            )));
        }
        let mut out: [u8; 48] = arr(le, 0);
        out.reverse();
        Ok(out)
    };
    let r = be(r, "r")?;
    let s = be(s, "s")?;
    Signature::from_scalars(r, s)
        .map_err(|e| Error::MalformedReportSignature(format!("r or s out of range: {e}")))
}

/// Encodes a P-384 signature as AMD does: `r || s`, each little-endian, zero-padded to 72 bytes.
pub fn encode_signature(sig: &Signature) -> [u8; 2 * SIG_COMPONENT_LEN] {
    let mut out = [0u8; 2 * SIG_COMPONENT_LEN];
    let (r, s) = sig.split_bytes();
    let mut r_le: [u8; 48] = r.into();
    r_le.reverse();
    let mut s_le: [u8; 48] = s.into();
    s_le.reverse();
    out[..48].copy_from_slice(&r_le);
    out[SIG_COMPONENT_LEN..SIG_COMPONENT_LEN + 48].copy_from_slice(&s_le);
    out
}

/// Verifies the report's ECDSA P-384/SHA-384 signature over the received bytes `0..0x2A0`
/// under `vcek` (the VCEK's public key).
pub fn verify_report_signature(report: &[u8], vcek: &VerifyingKey) -> Result<()> {
    if report.len() != REPORT_LEN {
        return Err(Error::ReportLength {
            expected: REPORT_LEN,
            actual: report.len(),
        });
    }
    let sig =
        decode_signature(&report[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 2 * SIG_COMPONENT_LEN])?;
    vcek.verify(&report[..SIGNED_LEN], &sig)
        .map_err(|_| Error::ReportSignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_the_abi_table() {
        // Spot checks that the field table tiles the structure without overlap.
        assert_eq!(offsets::REPORT_DATA + 64, offsets::MEASUREMENT);
        assert_eq!(offsets::MEASUREMENT + 48, offsets::HOST_DATA);
        assert_eq!(offsets::HOST_DATA + 32, offsets::ID_KEY_DIGEST);
        assert_eq!(offsets::ID_KEY_DIGEST + 48, offsets::AUTHOR_KEY_DIGEST);
        assert_eq!(offsets::AUTHOR_KEY_DIGEST + 48, offsets::REPORT_ID);
        assert_eq!(offsets::REPORT_ID + 32, offsets::REPORT_ID_MA);
        assert_eq!(offsets::REPORT_ID_MA + 32, offsets::REPORTED_TCB);
        assert_eq!(offsets::CHIP_ID + 64, offsets::COMMITTED_TCB);
        assert_eq!(offsets::SIGNATURE + 512, REPORT_LEN);
    }

    #[test]
    fn every_field_lands_at_its_offset() {
        let r = AttestationReport {
            version: 5,
            guest_svn: 0x0102_0304,
            policy: 0x1122_3344_5566_7788,
            family_id: [0xF1; 16],
            image_id: [0xF2; 16],
            vmpl: 3,
            signature_algo: 1,
            current_tcb: TcbVersion(0xA1),
            platform_info: 0xA2,
            flags: 0xA3,
            report_data: [0xF3; 64],
            measurement: [0xF4; 48],
            host_data: [0xF5; 32],
            id_key_digest: [0xF6; 48],
            author_key_digest: [0xF7; 48],
            report_id: [0xF8; 32],
            report_id_ma: [0xF9; 32],
            reported_tcb: TcbVersion(0xA4),
            cpuid_fam_id: 0x19,
            cpuid_mod_id: 0x11,
            cpuid_step: 0x01,
            chip_id: [0xFA; 64],
            committed_tcb: TcbVersion(0xA5),
            current: FirmwareVersion {
                build: 1,
                minor: 2,
                major: 3,
            },
            committed: FirmwareVersion {
                build: 4,
                minor: 5,
                major: 6,
            },
            launch_tcb: TcbVersion(0xA6),
            launch_mit_vector: 0xA7,
            current_mit_vector: 0xA8,
            signature: [0xFB; 512],
        };
        let b = r.to_bytes();
        assert_eq!(&b[0..4], &5u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x0102_0304u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[0x10..0x20], &[0xF1; 16]);
        assert_eq!(&b[0x20..0x30], &[0xF2; 16]);
        assert_eq!(b[0x30], 3);
        assert_eq!(b[0x34], 1);
        assert_eq!(b[0x38], 0xA1);
        assert_eq!(b[0x40], 0xA2);
        assert_eq!(b[0x48], 0xA3);
        assert_eq!(&b[0x50..0x90], &[0xF3; 64]);
        assert_eq!(&b[0x90..0xC0], &[0xF4; 48]);
        assert_eq!(&b[0xC0..0xE0], &[0xF5; 32]);
        assert_eq!(&b[0xE0..0x110], &[0xF6; 48]);
        assert_eq!(&b[0x110..0x140], &[0xF7; 48]);
        assert_eq!(&b[0x140..0x160], &[0xF8; 32]);
        assert_eq!(&b[0x160..0x180], &[0xF9; 32]);
        assert_eq!(b[0x180], 0xA4);
        assert_eq!(&b[0x188..0x18B], &[0x19, 0x11, 0x01]);
        assert!(b[0x18B..0x1A0].iter().all(|&x| x == 0));
        assert_eq!(&b[0x1A0..0x1E0], &[0xFA; 64]);
        assert_eq!(b[0x1E0], 0xA5);
        assert_eq!(&b[0x1E8..0x1F0], &[1, 2, 3, 0, 4, 5, 6, 0]);
        assert_eq!(b[0x1F0], 0xA6);
        assert_eq!(b[0x1F8], 0xA7);
        assert_eq!(b[0x200], 0xA8);
        assert!(b[0x208..0x2A0].iter().all(|&x| x == 0));
        assert_eq!(&b[0x2A0..], &[0xFB; 512]);
        assert_eq!(AttestationReport::from_bytes(&b).unwrap(), r);
    }

    #[test]
    fn rejects_bad_length_version_and_algo() {
        let mut r = AttestationReport {
            version: 2,
            signature_algo: 1,
            ..Default::default()
        };
        assert!(AttestationReport::from_bytes(&r.to_bytes()).is_ok());
        assert!(matches!(
            AttestationReport::from_bytes(&r.to_bytes()[..100]),
            Err(Error::ReportLength { actual: 100, .. })
        ));
        r.version = 1;
        assert!(matches!(
            AttestationReport::from_bytes(&r.to_bytes()),
            Err(Error::UnsupportedReportVersion(1))
        ));
        r.version = 2;
        r.signature_algo = 2;
        assert!(matches!(
            AttestationReport::from_bytes(&r.to_bytes()),
            Err(Error::UnsupportedReportSignatureAlgo(2))
        ));
    }

    #[test]
    fn tcb_layouts_round_trip() {
        let t = Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        };
        let raw = t.encode(TcbLayout::MilanGenoa);
        assert_eq!(raw.0.to_le_bytes(), [3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(raw.decode(TcbLayout::MilanGenoa), t);
        let t2 = Tcb { fmc: Some(1), ..t };
        let raw2 = t2.encode(TcbLayout::Turin);
        assert_eq!(raw2.0.to_le_bytes(), [1, 3, 0, 8, 0, 0, 0, 115]);
        assert_eq!(raw2.decode(TcbLayout::Turin), t2);
        assert!(t.meets(&t));
        assert!(!t.meets(&Tcb { snp: 9, ..t }));
        assert!(!t.meets(&Tcb { fmc: Some(0), ..t }));
    }
}

#[cfg(test)]
mod robustness {
    use rand::{Rng, RngCore};

    use super::*;

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::thread_rng();
        let key = p384::ecdsa::SigningKey::random(&mut rng);
        for i in 0..500 {
            let len = if i % 5 == 0 {
                rng.gen_range(0..2000)
            } else {
                REPORT_LEN
            };
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            if len == REPORT_LEN && i % 2 == 0 {
                b[0..4].copy_from_slice(&2u32.to_le_bytes());
                b[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
            }
            if let Ok(r) = AttestationReport::from_bytes(&b) {
                let _ = r.ecdsa_signature();
                let _ = r.tcb(r.reported_tcb);
                assert_eq!(AttestationReport::from_bytes(&r.to_bytes()).unwrap(), r);
            }
            assert!(verify_report_signature(&b, key.verifying_key()).is_err());
        }
    }
}

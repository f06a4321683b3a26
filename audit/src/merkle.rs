//! RFC 6962 / RFC 9162 Merkle tree hashing, pure and IO-free.
//!
//! The hash chain in [`crate::chain`] proves that nothing *before* the last entry changed, but a
//! proof about one entry needs the whole chain. A Merkle tree over the same entries gives
//! logarithmic proofs: that entry `i` is in the log a signed checkpoint describes (inclusion), and
//! that a later checkpoint extends an earlier one without rewriting it (consistency). We use the
//! Certificate Transparency construction unchanged so any RFC 9162 verifier can check our proofs:
//!
//! - leaf hash `SHA-256(0x00 || leaf bytes)`, interior node `SHA-256(0x01 || left || right)`;
//! - the tree of `n > 1` leaves splits at `k`, the largest power of two *smaller* than `n`;
//! - the empty tree's root is `SHA-256("")`.
//!
//! Proof generation here works from the list of leaf hashes (the verifier and the CLI have it);
//! [`Frontier`] keeps the writer's running root in `O(log n)` memory. Verification follows the
//! iterative algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.

use sha2::{Digest, Sha256};

/// A SHA-256 value: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Why a proof or a request for one is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The tree sizes are not ordered or exceed the leaves available.
    #[error("tree sizes {old} → {new} are invalid (need old ≤ new ≤ {available})")]
    SizeOutOfRange {
        /// The earlier size.
        old: u64,
        /// The later size.
        new: u64,
        /// How many leaves exist.
        available: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has {found} hashes; sizes and index need {expected}")]
    WrongProofLength {
        /// What the tree shape requires.
        expected: usize,
        /// What the proof holds.
        found: usize,
    },
    /// The proof does not lead to the claimed root(s).
    #[error("the proof does not match the root hash")]
    RootMismatch,
    /// The proof needs a node inside the pruned prefix of the log.
    #[error("the proof needs leaf {index}, which retention pruned")]
    Pruned {
        /// A pruned leaf the proof would need.
        index: u64,
    },
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n ≥ 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash (MTH) of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The audit path (RFC 6962 `PATH`) of leaf `index` in the tree of the first `size` leaves.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
    if size > leaves.len() as u64 {
        return Err(MerkleError::SizeOutOfRange {
            old: index,
            new: size,
            available: leaves.len() as u64,
        });
    }
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(to_usize(index), &leaves[..to_usize(size)], &mut proof);
    Ok(proof)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// The consistency proof (RFC 6962 `PROOF`) between the trees of the first `old` and the first
/// `new` leaves. Empty when `old` is 0 or equals `new`.
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
    if old > new || new > leaves.len() as u64 {
        return Err(MerkleError::SizeOutOfRange {
            old,
            new,
            available: leaves.len() as u64,
        });
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(to_usize(old), &leaves[..to_usize(new)], true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], complete, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// The leaves of a log whose first leaves were pruned: the pruned prefix survives as the
/// perfect subtrees of its [`Frontier`], followed by the retained leaf hashes. Every node an
/// inclusion or consistency proof needs about retained leaves is either built from retained
/// leaves or is one of those subtrees (an aligned subtree that is not maximal inside the prefix
/// never sits beside a path to a retained leaf), so proofs about retained entries can still be
/// made after retention.
#[derive(Debug, Clone, Copy)]
pub struct PrunedLeaves<'a> {
    /// The pruned prefix (may be empty).
    pub prefix: &'a Frontier,
    /// Leaf hashes from index `prefix.size()` on.
    pub leaves: &'a [Hash],
}

impl PrunedLeaves<'_> {
    /// Total number of leaves, pruned ones included.
    pub fn len(&self) -> u64 {
        self.prefix.size() + self.leaves.len() as u64
    }

    /// Whether there are no leaves at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// MTH of the first `size` leaves (pruned ones included).
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        if size == 0 {
            return Ok(empty_root());
        }
        if size > self.len() {
            return Err(MerkleError::SizeOutOfRange {
                old: size,
                new: size,
                available: self.len(),
            });
        }
        self.range_root(0, size)
    }

    /// MTH of leaves `[a, b)`.
    fn range_root(&self, a: u64, b: u64) -> Result<Hash, MerkleError> {
        let p = self.prefix.size();
        if a >= p {
            let s = to_usize(a - p);
            let e = to_usize(b - p);
            return self
                .leaves
                .get(s..e)
                .map(root)
                .ok_or(MerkleError::SizeOutOfRange {
                    old: a,
                    new: b,
                    available: self.len(),
                });
        }
        if let Some((_, _, h)) = self
            .prefix
            .blocks()
            .into_iter()
            .find(|&(s, l, _)| s == a && s + l == b)
        {
            return Ok(h);
        }
        let n = b - a;
        if n <= 1 {
            return Err(MerkleError::Pruned { index: a });
        }
        let k = split(to_usize(n)) as u64;
        Ok(node_hash(
            &self.range_root(a, a + k)?,
            &self.range_root(a + k, b)?,
        ))
    }

    fn path(&self, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) -> Result<(), MerkleError> {
        let n = b - a;
        if n <= 1 {
            return Ok(());
        }
        let k = split(to_usize(n)) as u64;
        if m < k {
            self.path(m, a, a + k, out)?;
            out.push(self.range_root(a + k, b)?);
        } else {
            self.path(m - k, a + k, b, out)?;
            out.push(self.range_root(a, a + k)?);
        }
        Ok(())
    }

    fn subproof(
        &self,
        m: u64,
        a: u64,
        b: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), MerkleError> {
        let n = b - a;
        if m == n {
            if !complete {
                out.push(self.range_root(a, b)?);
            }
            return Ok(());
        }
        let k = split(to_usize(n)) as u64;
        if m <= k {
            self.subproof(m, a, a + k, complete, out)?;
            out.push(self.range_root(a + k, b)?);
        } else {
            self.subproof(m - k, a + k, b, false, out)?;
            out.push(self.range_root(a, a + k)?);
        }
        Ok(())
    }

    /// [`inclusion_proof`] over these leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        if size > self.len() {
            return Err(MerkleError::SizeOutOfRange {
                old: index,
                new: size,
                available: self.len(),
            });
        }
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// [`consistency_proof`] over these leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
        if old > new || new > self.len() {
            return Err(MerkleError::SizeOutOfRange {
                old,
                new,
                available: self.len(),
            });
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof)?;
        }
        Ok(proof)
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            found: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(MerkleError::WrongProofLength {
                expected,
                found: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || &r != root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// The number of hashes in an inclusion proof for `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    // Levels below the point where the paths to `index` and to the last leaf meet, plus the
    // number of left-hand full subtrees above it (RFC 9162's decomposition).
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Checks that the tree of `new` leaves with root `new_root` extends the tree of `old` leaves
/// with root `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old > new {
        return Err(MerkleError::SizeOutOfRange {
            old,
            new,
            available: new,
        });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength {
                expected: 0,
                found: proof.len(),
            });
        }
        // Any tree extends the empty one; equal sizes need equal roots.
        return if old == 0 || old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    let wrong_len = |expected| MerkleError::WrongProofLength {
        expected,
        found: proof.len(),
    };
    if proof.is_empty() {
        return Err(wrong_len(1));
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(wrong_len(path.len() - 1));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_len(path.len()));
    }
    if &fr != old_root || &sr != new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its maximal perfect subtrees, largest first.
/// Appending is amortised `O(1)` hashes and the root is `O(log n)`, so the writer and the
/// verifier know the root at every size without keeping all leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // INVARIANT: one stack entry per set bit of `size`.
            let Some(left) = self.stack.pop() else { break };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The roots of the maximal perfect subtrees, largest (leftmost) first: `size.count_ones()`
    /// hashes. With [`Frontier::size`] this is everything needed to continue the tree, which is
    /// what a retention anchor stores.
    pub fn stack(&self) -> &[Hash] {
        &self.stack
    }

    /// Rebuilds a frontier from its size and [`Frontier::stack`]; `None` when the number of
    /// hashes does not fit the size.
    pub fn from_parts(size: u64, stack: Vec<Hash>) -> Option<Frontier> {
        (stack.len() == size.count_ones() as usize).then_some(Frontier { size, stack })
    }

    /// The perfect subtrees of the frontier as `(first leaf, number of leaves, hash)`, left to
    /// right.
    pub fn blocks(&self) -> Vec<(u64, u64, Hash)> {
        let mut out = Vec::with_capacity(self.stack.len());
        let mut start = 0u64;
        let mut hashes = self.stack.iter();
        for bit in (0..64).rev() {
            let len = 1u64 << bit;
            if self.size & len != 0 {
                if let Some(h) = hashes.next() {
                    out.push((start, len, *h));
                }
                start += len;
            }
        }
        out
    }

    /// The current root (RFC 6962 MTH of all leaves pushed so far).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 6962 reference leaves (transparency-dev/merkle `testonly`, used as data only).
    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn roots_match_the_rfc_vectors_for_every_size() {
        let leaves = reference_leaves();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), h(ROOTS[0]));
        for n in 0..=leaves.len() {
            assert_eq!(root(&leaves[..n]), h(ROOTS[n]), "size {n}");
            if n > 0 {
                frontier.push(leaves[n - 1]);
                assert_eq!(frontier.root(), h(ROOTS[n]), "frontier size {n}");
            }
        }
    }

    #[test]
    fn inclusion_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (0, 1, &[]),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(got, want, "PATH({index}, {size})");
            let root = h(ROOTS[size as usize]);
            verify_inclusion(&leaves[index as usize], index, size, &got, &root).unwrap();
        }
    }

    #[test]
    fn consistency_vectors() {
        let leaves = reference_leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&leaves, old, new).unwrap();
            assert_eq!(got, want, "PROOF({old}, {new})");
            verify_consistency(
                old,
                new,
                &h(ROOTS[old as usize]),
                &h(ROOTS[new as usize]),
                &got,
            )
            .unwrap();
        }
    }

    #[test]
    fn degenerate_cases() {
        let leaves = reference_leaves();
        let r4 = h(ROOTS[4]);
        let r5 = h(ROOTS[5]);
        verify_consistency(4, 4, &r4, &r4, &[]).unwrap();
        assert!(verify_consistency(4, 4, &r4, &r5, &[]).is_err());
        assert!(verify_consistency(4, 4, &r4, &r4, &[r4]).is_err());
        verify_consistency(0, 8, &empty_root(), &h(ROOTS[8]), &[]).unwrap();
        assert!(verify_consistency(0, 8, &empty_root(), &h(ROOTS[8]), &[r4]).is_err());
        assert!(verify_consistency(5, 4, &r5, &r4, &[]).is_err());
        assert!(verify_consistency(3, 4, &h(ROOTS[3]), &r4, &[]).is_err());
        assert!(inclusion_proof(&leaves, 8, 8).is_err());
        assert!(inclusion_proof(&leaves, 0, 9).is_err());
        assert!(consistency_proof(&leaves, 5, 3).is_err());
        assert!(verify_inclusion(&leaves[0], 0, 0, &[], &empty_root()).is_err());
        assert!(verify_inclusion(&leaves[0], 1, 1, &[], &leaves[0]).is_err());
    }

    #[test]
    fn proofs_over_a_pruned_prefix_equal_the_full_ones() {
        let leaves: Vec<Hash> = (0u32..23).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for p in 0..=leaves.len() {
            let mut prefix = Frontier::new();
            for l in &leaves[..p] {
                prefix.push(*l);
            }
            let pruned = PrunedLeaves {
                prefix: &prefix,
                leaves: &leaves[p..],
            };
            for size in (p as u64).max(1)..=leaves.len() as u64 {
                for index in p as u64..size {
                    assert_eq!(
                        pruned.inclusion_proof(index, size).unwrap(),
                        inclusion_proof(&leaves, index, size).unwrap(),
                        "prefix {p} index {index} size {size}"
                    );
                }
                for old in p as u64..=size {
                    assert_eq!(
                        pruned.consistency_proof(old, size).unwrap(),
                        consistency_proof(&leaves, old, size).unwrap(),
                        "prefix {p} {old} -> {size}"
                    );
                }
            }
            if p > 1 {
                assert!(pruned.inclusion_proof(0, p as u64).is_err());
            }
        }
    }

    #[test]
    fn split_is_the_rfc_rule_not_the_midpoint() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (7, 4),
            (8, 4),
            (9, 8),
            (1000, 512),
        ] {
            assert_eq!(split(n), k, "n = {n}");
        }
    }
}

//! Property tests for the RFC 9162 Merkle proofs: every honest proof verifies, and every
//! mutation of it (a proof hash, the leaf, the index, the tree size with its own root, the
//! length) is refused.

use cloister_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    Frontier, Hash,
};
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frontier_matches_the_recursive_root(n in 0usize..300) {
        let l = leaves(n);
        let mut f = Frontier::new();
        for (i, leaf) in l.iter().enumerate() {
            prop_assert_eq!(f.root(), root(&l[..i]));
            f.push(*leaf);
        }
        prop_assert_eq!(f.root(), root(&l));
        prop_assert_eq!(f.size(), n as u64);
    }

    #[test]
    fn inclusion_proofs_verify_and_mutations_fail(
        n in 1usize..130, i_seed in any::<u64>(), s_seed in any::<u64>(),
        which in any::<usize>(), bit in 0u8..8, byte in 0usize..32,
    ) {
        let l = leaves(n);
        let size = 1 + s_seed % n as u64;
        let index = i_seed % size;
        let r = root(&l[..size as usize]);
        let proof = inclusion_proof(&l, index, size).unwrap();
        let leaf = l[index as usize];
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &r).is_ok());

        // A flipped bit anywhere in the proof.
        if !proof.is_empty() {
            let mut bad = proof.clone();
            bad[which % proof.len()][byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &r).is_err());
            // One hash fewer.
            prop_assert!(verify_inclusion(&leaf, index, size, &proof[1..], &r).is_err());
        }
        // One hash more.
        let mut longer = proof.clone();
        longer.push([0xab; 32]);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &r).is_err());
        // Another leaf, or the same leaf claimed at another index.
        let mut other = leaf;
        other[byte] ^= 1 << bit;
        prop_assert!(verify_inclusion(&other, index, size, &proof, &r).is_err());
        if size > 1 {
            let wrong = (index + 1 + which as u64 % (size - 1)) % size;
            prop_assert!(verify_inclusion(&leaf, wrong, size, &proof, &r).is_err());
        }
        // Another tree size, with that size's genuine root.
        if (n as u64) > size {
            let s2 = size + 1;
            let r2 = root(&l[..s2 as usize]);
            prop_assert!(verify_inclusion(&leaf, index, s2, &proof, &r2).is_err());
        }
        // A wrong root.
        let mut bad_root = r;
        bad_root[byte] ^= 1 << bit;
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &bad_root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_mutations_fail(
        n in 1usize..130, a in any::<u64>(), b in any::<u64>(),
        which in any::<usize>(), bit in 0u8..8, byte in 0usize..32,
    ) {
        let l = leaves(n);
        let new = 1 + b % n as u64;
        let old = 1 + a % new;
        let (r1, r2) = (root(&l[..old as usize]), root(&l[..new as usize]));
        let proof = consistency_proof(&l, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
        if old < new {
            let mut bad = proof.clone();
            bad[which % proof.len()][byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old, new, &r1, &r2, &bad).is_err());
            prop_assert!(verify_consistency(old, new, &r1, &r2, &proof[1..]).is_err());
            let mut longer = proof.clone();
            longer.push([0xcd; 32]);
            prop_assert!(verify_consistency(old, new, &r1, &r2, &longer).is_err());
            let mut bad_r1 = r1;
            bad_r1[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old, new, &bad_r1, &r2, &proof).is_err());
            let mut bad_r2 = r2;
            bad_r2[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old, new, &r1, &bad_r2, &proof).is_err());
            // The other direction is never a valid claim.
            prop_assert!(verify_consistency(new, old, &r2, &r1, &proof).is_err());
        } else {
            prop_assert!(proof.is_empty());
        }
        // A different leaf sequence of the same new size does not extend the old tree.
        let mut forked = l[..new as usize].to_vec();
        let at = (which as u64 % old) as usize;
        forked[at] = leaf_hash(b"forked");
        let forked_root = root(&forked);
        if old < new {
            prop_assert!(verify_consistency(old, new, &r1, &forked_root, &proof).is_err());
        }
    }
}

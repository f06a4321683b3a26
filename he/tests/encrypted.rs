//! Encrypted evaluation equals the plaintext reference bit for bit, and ciphertexts or scores
//! that belong to another key are refused with a typed error (or, if forced through, do not
//! decrypt to the right scores).

mod common;

use std::time::Instant;

use cloister_he::client::generate_keys;
use cloister_he::program::argmax;
use cloister_he::{plaintext, HeError};
use tfhe::shortint::ciphertext::Degree;

/// Held-out rows checked end to end (a few: each costs hundreds of bootstraps).
const ROWS: [usize; 3] = [0, 1, 2];

#[test]
fn encrypted_scores_equal_the_plaintext_reference_bit_for_bit() {
    let program = common::program();
    let heldout = common::heldout();
    let keys = common::keys();
    for row in ROWS {
        let q = program.quantize(&heldout.input[row]).unwrap();
        let expected = plaintext::evaluate(&program, &q).unwrap();

        let encrypted = keys.client.encrypt(&program, &q).unwrap();
        let t = Instant::now();
        let scores = keys.evaluator.evaluate(&program, &encrypted).unwrap();
        eprintln!(
            "row {row}: evaluated in {:.2} s with {} bootstraps",
            t.elapsed().as_secs_f64(),
            scores.pbs_count
        );
        let decrypted = keys.client.decrypt(&program, &scores).unwrap();
        assert_eq!(decrypted, expected, "row {row}: encrypted != plaintext");
        assert_eq!(argmax(&decrypted), argmax(&expected));
        eprintln!(
            "row {row}: label {} predicted {:?}",
            heldout.labels[row],
            argmax(&decrypted)
        );
    }
}

#[test]
fn another_key_is_refused_and_forced_ciphertexts_do_not_decrypt() {
    let program = common::program();
    let heldout = common::heldout();
    let keys = common::keys();
    let other = generate_keys(&mut |_| {}).unwrap().client;
    assert_ne!(other.key_id(), keys.client.key_id());

    let q = program.quantize(&heldout.input[3]).unwrap();
    let expected = plaintext::evaluate(&program, &q).unwrap();

    // Encrypted under the other key: the evaluator refuses it by key id, before any work.
    let mut foreign = other.encrypt(&program, &q).unwrap();
    match keys.evaluator.evaluate(&program, &foreign) {
        Err(HeError::KeyMismatch { .. }) => {}
        Err(e) => panic!("expected KeyMismatch, got {e}"),
        Ok(_) => panic!("expected KeyMismatch, got scores"),
    }

    // Forced through with a forged key id: computes, but our key cannot read it.
    foreign.key_id = keys.client.key_id();
    let scores = keys.evaluator.evaluate(&program, &foreign).unwrap();
    let garbled = keys.client.decrypt(&program, &scores).unwrap();
    assert_ne!(
        garbled, expected,
        "a foreign ciphertext decrypted to the true scores"
    );

    // Scores for our key cannot be opened by the other client (typed error).
    match other.decrypt(&program, &scores) {
        Err(HeError::KeyMismatch { .. }) => {}
        Err(e) => panic!("expected KeyMismatch, got {e}"),
        Ok(_) => panic!("expected KeyMismatch, got scores"),
    }
}

#[test]
fn non_conformant_ciphertexts_and_bad_inputs_are_typed_errors() {
    let program = common::program();
    let keys = common::keys();
    let q = vec![1u8; program.input.features];

    let mut encrypted = keys.client.encrypt(&program, &q).unwrap();
    encrypted.blocks[5].degree = Degree::new(15);
    assert!(matches!(
        keys.evaluator.evaluate(&program, &encrypted),
        Err(HeError::NonConformantCiphertext { index: 5 })
    ));

    let mut short = keys.client.encrypt(&program, &q).unwrap();
    short.blocks.pop();
    assert!(matches!(
        keys.evaluator.evaluate(&program, &short),
        Err(HeError::InputLength { .. })
    ));

    assert!(matches!(
        keys.client
            .encrypt(&program, &vec![4u8; program.input.features]),
        Err(HeError::InputRange { value: 4, .. })
    ));
}

#[test]
fn keys_round_trip_and_a_truncated_server_key_is_refused() {
    let keys = common::keys();
    let bytes = keys.client.to_bytes().unwrap();
    let back = cloister_he::client::HeClient::from_bytes(&bytes).unwrap();
    assert_eq!(back.key_id(), keys.client.key_id());

    let truncated = &keys.server_key_bytes[..keys.server_key_bytes.len() / 2];
    assert!(matches!(
        cloister_he::server::Evaluator::from_compressed_bytes(truncated),
        Err(HeError::Deserialize { .. })
    ));
    assert!(matches!(
        cloister_he::client::HeClient::from_bytes(&bytes[..40]),
        Err(HeError::Deserialize { .. })
    ));
}

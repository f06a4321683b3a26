//! Encrypted evaluation equals the plaintext reference bit for bit, for every committed
//! model; ciphertexts, scores and keys that do not belong together, or bytes that are
//! truncated, oversized or garbage, are typed errors with bounded memory.

mod common;

use std::time::Instant;

use cloister_he::client::{generate_keys, raw_phase, EncryptedInput};
use cloister_he::server::{EncryptedScores, Evaluator};
use cloister_he::{noise, plaintext, HeError};

/// Check `rows` held-out rows of `model` end to end; returns the mean latency in ms.
fn bit_exact(model: &str, rows: &[usize]) -> f64 {
    let program = common::program(model);
    let heldout = common::heldout_for(model);
    let keys = common::keys();
    let mut total = 0.0;
    for &row in rows {
        let q = program.quantize(&heldout.input[row]).unwrap();
        let expected = plaintext::evaluate(&program, &q).unwrap();
        let encrypted = keys.client.encrypt(&program, &q).unwrap();
        // Through the wire formats, as a server would receive and send them.
        let received = EncryptedInput::from_bytes(&encrypted.to_bytes()).unwrap();
        assert_eq!(received, encrypted);
        let t = Instant::now();
        let scores = keys.evaluator.evaluate(&program, &received).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        total += ms;
        let scores = EncryptedScores::from_bytes(&scores.to_bytes()).unwrap();
        let decrypted = keys.client.decrypt(&program, &scores).unwrap();
        eprintln!(
            "{model} row {row}: {ms:.1} ms, {} PBS, scores {decrypted:?}",
            scores.pbs_count
        );
        assert_eq!(
            decrypted, expected,
            "{model} row {row}: encrypted != plaintext"
        );
        assert_eq!(program.decide(&decrypted), program.decide(&expected));
    }
    total / rows.len() as f64
}

#[test]
fn breast_cancer_lr_is_bit_exact_and_its_noise_is_as_predicted() {
    let ms = bit_exact("breast-cancer-lr", &[0, 1, 2, 3, 4, 5, 6, 7]);
    eprintln!("breast-cancer-lr: {ms:.2} ms per inference");

    // The score's actual noise is within the model's prediction (13.1 sigma).
    let program = common::program("breast-cancer-lr");
    let keys = common::keys();
    let q = program
        .quantize(&common::heldout("breast-cancer-lr").input[9])
        .unwrap();
    let exact = plaintext::evaluate(&program, &q).unwrap()[0];
    let off = program.analyse().unwrap().score_offsets[0];
    let ct = keys.client.encrypt(&program, &q).unwrap();
    let scores = keys.evaluator.evaluate(&program, &ct).unwrap();
    let phase = raw_phase(&keys.client, &scores.ciphertexts[0]);
    let d = 64 - program.output.bits;
    let error = phase.wrapping_sub(((exact - off) as u64).wrapping_shl(d)) as i64;
    let norm2: f64 = program.layers[0].weights[0]
        .iter()
        .map(|&w| (w * w) as f64)
        .sum();
    let sigma = (norm2 * noise::fresh_variance()).sqrt() * 2f64.powi(64);
    eprintln!("score noise {error} vs predicted sigma {sigma:.0}");
    assert!((error as f64).abs() <= noise::Z_2M128 * sigma);
    assert_ne!(error, 0, "a real encryption carries noise");
}

#[test]
fn digits_linear_program_is_bit_exact() {
    bit_exact("digits-he", &[0, 1, 2]);
}

#[test]
fn digits_mlp_is_bit_exact_through_its_bootstraps() {
    let program = common::program("digits-mlp-he");
    assert_eq!(program.analyse().unwrap().pbs_count, 80);
    let ms = bit_exact("digits-mlp-he", &[0, 1]);
    eprintln!("digits-mlp-he: {ms:.0} ms per inference");
}

#[test]
fn another_key_is_refused_and_forced_ciphertexts_do_not_decrypt() {
    let program = common::program("breast-cancer-lr");
    let heldout = common::heldout("breast-cancer-lr");
    let keys = common::keys();
    let other = generate_keys(&mut |_| {}).unwrap().client;
    assert_ne!(other.key_id(), keys.client.key_id());
    let q = program.quantize(&heldout.input[3]).unwrap();
    let expected = plaintext::evaluate(&program, &q).unwrap();

    let mut foreign = other.encrypt(&program, &q).unwrap();
    assert!(matches!(
        keys.evaluator.evaluate(&program, &foreign),
        Err(HeError::KeyMismatch { .. })
    ));
    // Forced through with a forged key id: computes, but our key cannot read it.
    foreign.key_id = keys.client.key_id();
    let scores = keys.evaluator.evaluate(&program, &foreign).unwrap();
    let garbled = keys.client.decrypt(&program, &scores).unwrap();
    assert_ne!(
        garbled, expected,
        "a foreign ciphertext decrypted to the true score"
    );
    // Scores for our key cannot be opened by the other client (typed error).
    assert!(matches!(
        other.decrypt(&program, &scores),
        Err(HeError::KeyMismatch { .. })
    ));
}

#[test]
fn other_parameters_bad_lengths_and_bad_bytes_are_typed_errors() {
    let program = common::program("breast-cancer-lr");
    let keys = common::keys();
    let q = vec![1i64; program.input.features];
    let good = keys.client.encrypt(&program, &q).unwrap();

    // Another parameter set (another LWE dimension).
    let mut other = good.clone();
    other.lwe_dimension = 918;
    assert!(matches!(
        keys.evaluator.evaluate(&program, &other),
        Err(HeError::ParameterMismatch { found: 918, .. })
    ));
    // Too few / too many ciphertexts.
    let mut short = good.clone();
    short.bodies.pop();
    assert!(matches!(
        keys.evaluator.evaluate(&program, &short),
        Err(HeError::InputLength { .. })
    ));
    let mut long = good.clone();
    long.bodies.push(0);
    assert!(matches!(
        keys.evaluator.evaluate(&program, &long),
        Err(HeError::InputLength { .. })
    ));
    // Out-of-range plaintext input.
    assert!(matches!(
        keys.client
            .encrypt(&program, &vec![500; program.input.features]),
        Err(HeError::InputRange { value: 500, .. })
    ));

    // Wire: truncated, trailing bytes, wrong tag, a huge announced count.
    let bytes = good.to_bytes();
    for bad in [
        &bytes[..bytes.len() - 3],
        &bytes[..20],
        &[bytes.as_slice(), &[0u8; 8]].concat()[..],
        b"not a ciphertext".as_slice(),
    ] {
        assert!(matches!(
            EncryptedInput::from_bytes(bad),
            Err(HeError::Deserialize { .. })
        ));
    }
    let mut huge = bytes.clone();
    let count_at = cloister_he::client::INPUT_TAG.len() + 32 + 4;
    huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        EncryptedInput::from_bytes(&huge),
        Err(HeError::Deserialize { .. })
    ));
    let mut wide = bytes.clone();
    let dim_at = cloister_he::client::INPUT_TAG.len() + 32;
    wide[dim_at..dim_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        EncryptedInput::from_bytes(&wide),
        Err(HeError::Deserialize { .. })
    ));

    let scores = keys.evaluator.evaluate(&program, &good).unwrap();
    let sbytes = scores.to_bytes();
    assert!(matches!(
        EncryptedScores::from_bytes(&sbytes[..sbytes.len() - 1]),
        Err(HeError::Deserialize { .. })
    ));
    let mut shuge = sbytes.clone();
    let at = cloister_he::server::SCORES_TAG.len() + 32 + 4;
    shuge[at..at + 4].copy_from_slice(&4000u32.to_le_bytes());
    assert!(matches!(
        EncryptedScores::from_bytes(&shuge),
        Err(HeError::Deserialize { .. })
    ));
    // Scores of the wrong shape for the program.
    let mut two = scores.clone();
    two.ciphertexts.push(two.ciphertexts[0].clone());
    assert!(matches!(
        keys.client.decrypt(&program, &two),
        Err(HeError::ScoreShape { .. })
    ));
}

#[test]
fn keys_round_trip_and_bad_server_keys_are_refused() {
    let keys = common::keys();
    let bytes = keys.client.to_bytes().unwrap();
    let back = cloister_he::client::HeClient::from_bytes(&bytes).unwrap();
    assert_eq!(back.key_id(), keys.client.key_id());
    assert!(matches!(
        cloister_he::client::HeClient::from_bytes(&bytes[..40]),
        Err(HeError::Deserialize { .. })
    ));

    let sk = &keys.server_key_bytes;
    eprintln!("compressed server key: {} bytes", sk.len());
    for bad in [
        sk[..sk.len() / 2].to_vec(),
        sk[..10].to_vec(),
        [sk.as_slice(), b"x"].concat(),
        // The right tag, then garbage that announces absurd lengths: bincode's size limit
        // refuses it without allocating.
        [cloister_he::client::SERVER_KEY_TAG, &[0xff; 64][..]].concat(),
    ] {
        assert!(matches!(
            Evaluator::from_compressed_bytes(&bad),
            Err(HeError::Deserialize { .. })
        ));
    }
}

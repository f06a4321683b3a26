//! The `attack-hooks` feature (sandbox tests only) must never reach a release build: it lets a
//! test make the engine worker attempt sandbox crossings. This file holds only the guard, so a
//! test can compile it alone with `rustc` and prove that a release build with the feature fails
//! (`enclave/tests/attack_guard.rs`).

#[cfg(all(feature = "attack-hooks", not(debug_assertions)))]
compile_error!(
    "the `attack-hooks` feature of cloister-enclave exists for sandbox tests only and is refused \
     in release builds; build without it"
);

//! cloister-e2e

//! Shared fixtures for the criterion benches (the benches live in `benches/`).

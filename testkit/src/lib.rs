//! The test kit of hostlock's own tests and fuzz targets: one model of
//! `docs/semantics.md`, the operations it and the lockers are driven by, and
//! the entry points of the fuzz targets in `fuzz/`, which
//! `tests/fuzz_corpus.rs` and `tests/model.rs` replay on the stable
//! toolchain. With the feature `tokio`, [`aio`] holds the checks of the
//! async API that hostlock's tests and those of the SQLite and Redis crates
//! run on their lockers. It uses hostlock's public API alone (with the
//! `fault-injection` feature), so the library carries none of it.
//!
//! Each entry point panics on a finding and only then, since a panic is what
//! the fuzzer and proptest report. The caller passes a scratch directory for
//! the files a run creates.

#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
pub mod aio;
mod files;
mod model;
mod ops;
mod subject;

pub use crate::files::open_file;
pub use crate::ops::{MAX_OPS, Op, TOKENS, When, decode_ops, start};
pub use crate::run::{ops_faults, ops_model, run_ops};

mod run;

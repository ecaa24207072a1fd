//! The entry point of the fuzz target in `fuzz/` that needs the library's
//! insides (the stored record format), which `tests/fuzz_corpus.rs` replays
//! on the stable toolchain; not part of the public API. The targets that use
//! the public API alone have theirs in `testkit/`.
//!
//! It panics on a finding and only then, since a panic is what the fuzzer
//! reports.

use serde::de::DeserializeOwned;

use crate::value::{Record, Request, decode_value};

/// Decodes `bytes` as a stored record with a value of type `T`, and checks
/// that a record that decodes encodes back to the same bytes.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let record = Record::decode(bytes)?;
    assert_eq!(
        record.encode(),
        bytes,
        "a decoded record must re-encode exactly"
    );
    decode_value(record.value)
}

/// Decodes `bytes` as a waiter's stored request with a value of type `T`,
/// and checks that a request that decodes encodes back to the same bytes.
pub fn decode_request<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let request = Request::decode(bytes)?;
    assert_eq!(
        request.encode(),
        bytes,
        "a decoded request must re-encode exactly"
    );
    decode_value(request.value)
}

//! Fuzz target: no input makes `hostlock::fuzzing::decode_record` or `decode_request` panic, and every record or waiter's request that decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Errors are expected for most inputs; only a panic (including a failed
    // re-encode check inside `decode_record`) is a finding.
    let _ = hostlock::fuzzing::decode_record::<serde_json::Value>(data);
    let _ = hostlock::fuzzing::decode_record::<String>(data);
    let _ = hostlock::fuzzing::decode_record::<u64>(data);
    let _ = hostlock::fuzzing::decode_request::<serde_json::Value>(data);
    let _ = hostlock::fuzzing::decode_request::<u64>(data);
});

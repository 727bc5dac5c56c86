//! W3C `traceparent` parsing and the gateway's own (`portcullis::fuzzing::traceparent`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::traceparent(data));

//! The request-target normalizer against its reference (`portcullis::fuzzing::request_target`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::request_target(data));

//! API keys in headers, bearer tokens and queries (`portcullis::fuzzing::key_place`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::key_place(data));

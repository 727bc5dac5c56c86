//! Client request ids (`portcullis::fuzzing::request_id`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::request_id(data));

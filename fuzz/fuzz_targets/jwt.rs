//! Bearer tokens and JSON Web Key Sets (`portcullis::fuzzing::jwt`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::jwt(data));

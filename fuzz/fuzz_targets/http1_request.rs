//! The HTTP/1 request path, bytes in to the gateway's decision (`portcullis::fuzzing::http1`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::http1(data));

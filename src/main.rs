//! The `portcullis` binary: all logic lives in the library.

use mimalloc::MiMalloc;

// Pingora on glibc malloc measured about 10% slower.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}

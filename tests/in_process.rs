//! The server runs inside a test process and stops there: `server::run`
//! returns when its `Stop` is triggered, instead of ending the process
//! (only the binary exits).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Backend;
use portcullis::gateway::Gateway;
use portcullis::server::{RunOptions, Stop};

/// Set while `run` is running: a process exit then (instead of `run`
/// returning) ends the test binary with status 3, which fails the run.
static RUNNING: AtomicBool = AtomicBool::new(false);

extern "C" fn exit_guard() {
    if RUNNING.load(Ordering::SeqCst) {
        // SAFETY: `_exit` ends the process at once; nothing runs after it.
        unsafe { libc::_exit(3) };
    }
}

#[test]
fn a_gateway_started_in_process_serves_and_stops_without_ending_the_process() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start("in-process"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let config = common::single_route("p", &[backend.addr], "", "").replace(
        "watch_config = false",
        "watch_config = false\ngrace_period = \"1s\"",
    );
    std::fs::write(&path, config).unwrap();
    let gateway = Gateway::load(path).expect("the config loads");

    // SAFETY: registers a plain function to run at process exit.
    assert_eq!(unsafe { libc::atexit(exit_guard) }, 0);
    RUNNING.store(true, Ordering::SeqCst);
    let stop = Stop::new();
    let server = std::thread::spawn({
        let gateway = gateway.clone();
        let stop = stop.clone();
        move || {
            portcullis::server::run(
                gateway,
                RunOptions {
                    stop: Some(stop),
                    ..RunOptions::default()
                },
            )
        }
    });

    let deadline = Instant::now() + common::DEADLINE;
    let answer = loop {
        let proxy = gateway.bound_listeners().first().copied();
        let got = proxy.and_then(|addr| {
            rt.block_on(async {
                let resp = common::client()
                    .get(format!("http://{addr}/x"))
                    .send()
                    .await
                    .ok()?;
                Some((resp.status().as_u16(), resp.text().await.ok()?))
            })
        });
        match got {
            Some(answer) => break answer,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("the in-process gateway never answered"),
        }
    };
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(answer.1.contains("in-process"), "{answer:?}");

    stop.stop();
    let deadline = Instant::now() + common::DEADLINE;
    while !server.is_finished() {
        assert!(Instant::now() < deadline, "run did not return after stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    RUNNING.store(false, Ordering::SeqCst);
    server.join().unwrap().expect("run ends without error");
    // Stopped: the listener no longer accepts.
    let addr = gateway.bound_listeners()[0];
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

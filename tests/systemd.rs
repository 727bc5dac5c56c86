//! Running under systemd: the notifications a `Type=notify` unit gets
//! (read from a real `NOTIFY_SOCKET`), and the shipped unit file checked by
//! `systemd-analyze verify` and `systemd-analyze security --offline`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::{single_route, TestGateway};
use tokio::net::UnixDatagram;

/// Datagrams received until one contains `needle` (or the deadline).
async fn until(sock: &UnixDatagram, needle: &str, log: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => panic!("no {needle:?} from the gateway; got {log:?}"),
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        log.push(msg.clone());
        if msg.contains(needle) {
            return;
        }
    }
}

#[tokio::test]
async fn ready_reloading_watchdog_and_stopping_are_notified() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let config = dir.path().join("portcullis.toml");
    let text = single_route("p", &[backend.addr], "", "");
    std::fs::write(&config, &text).unwrap();
    let mut gw = TestGateway::start_file_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let mut log = Vec::new();
    until(&sock, "READY=1", &mut log).await;
    let ready = log.last().unwrap().clone();
    assert!(
        ready.contains("STATUS=serving 1 routes, 1 pools"),
        "{ready}"
    );
    // The listener accepts by the time READY=1 is sent.
    assert_eq!(common::get_json(&gw.url("/x")).await.0, 200);
    until(&sock, "WATCHDOG=1", &mut log).await;

    gw.sighup();
    until(&sock, "RELOADING=1", &mut log).await;
    assert!(log.last().unwrap().contains("MONOTONIC_USEC="), "{log:?}");
    until(&sock, "READY=1", &mut log).await;
    assert!(log.last().unwrap().contains("(reloaded)"), "{log:?}");

    std::fs::write(&config, format!("{text}\nbroken = [")).unwrap();
    gw.sighup();
    until(&sock, "RELOADING=1", &mut log).await;
    until(&sock, "READY=1", &mut log).await;
    let rejected = log.last().unwrap();
    assert!(
        rejected.contains("reload rejected (1 error(s)); serving the previous config"),
        "{rejected}"
    );
    assert_eq!(common::get_json(&gw.url("/x")).await.0, 200);

    gw.signal("TERM");
    until(&sock, "STOPPING=1", &mut log).await;
    assert_eq!(gw.exited().await, Some(0));
}

/// A reload the file watcher starts is notified like the others: it goes
/// through the same reload path.
#[tokio::test]
async fn a_reload_by_the_file_watcher_is_notified_too() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let config = dir.path().join("portcullis.toml");
    let text = common::watching(&single_route("p", &[backend.addr], "", ""));
    std::fs::write(&config, &text).unwrap();
    let _gw = TestGateway::start_file_with_env(
        &config,
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )
    .await;
    let mut log = Vec::new();
    until(&sock, "READY=1", &mut log).await;
    // Written elsewhere and renamed into place, as editors do.
    let edited = dir.path().join("edited.tmp");
    std::fs::write(&edited, text.replace("path = \"/\"", "path = \"/moved\"")).unwrap();
    std::fs::rename(&edited, &config).unwrap();
    until(&sock, "RELOADING=1", &mut log).await;
    until(&sock, "READY=1", &mut log).await;
    assert!(log.last().unwrap().contains("(reloaded)"), "{log:?}");
}

/// The shipped unit with `ExecStart` and friends pointing at the binary
/// under test.
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/portcullis.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/portcullis", common::bin());
    let path = dir.join("portcullis.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn the_unit_file_verifies_and_its_exposure_is_at_most_1_6() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (scripts/install-deps.sh --test installs it)");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );

    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("exposure level for portcullis.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(score <= 1.6, "exposure {score}:\n{out}");
}

/// Under `ProtectSystem=strict` only the unit's own directories are
/// writable: the log file the logrotate snippet rotates (and the package's
/// config writes) must be in one, and so must the upgrade socket.
#[test]
fn the_unit_can_write_the_log_the_package_sets_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/portcullis.service")).unwrap();
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect()
    };
    assert_eq!(setting("ProtectSystem"), ["strict"]);
    let mut writable: Vec<std::path::PathBuf> = setting("ReadWritePaths")
        .into_iter()
        .map(Into::into)
        .collect();
    for (key, base) in [
        ("LogsDirectory", "/var/log"),
        ("StateDirectory", "/var/lib"),
        ("RuntimeDirectory", "/run"),
    ] {
        writable.extend(setting(key).iter().map(|d| Path::new(base).join(d)));
    }
    let logrotate = std::fs::read_to_string(root.join("conf/logrotate/portcullis")).unwrap();
    let rotated = logrotate
        .lines()
        .find_map(|l| l.strip_suffix(" {").filter(|p| p.starts_with('/')))
        .expect("the snippet names the log it rotates");
    let in_writable = |p: &Path| writable.iter().any(|w| p.starts_with(w));
    assert!(
        in_writable(Path::new(rotated)),
        "{rotated} is read-only for the unit (writable: {writable:?})"
    );
    // The binary-upgrade socket lives in $RUNTIME_DIRECTORY.
    assert!(in_writable(Path::new("/run/portcullis/upgrade.sock")));
    // The working directory exists and is the unit's own.
    let workdir = setting("WorkingDirectory");
    assert!(in_writable(Path::new(&workdir[0])), "{workdir:?}");
    // The package's own scripts agree on the directory and its owner.
    let postinst = std::fs::read_to_string(root.join("debian/postinst")).unwrap();
    assert!(
        postinst.contains("-o portcullis -g portcullis -m 0750 /var/log/portcullis"),
        "{postinst}"
    );
    let deb = std::fs::read_to_string(root.join("scripts/deb.sh")).unwrap();
    assert!(
        deb.contains("conf/logrotate/portcullis"),
        "deb.sh points the packaged config at the rotated log"
    );
}

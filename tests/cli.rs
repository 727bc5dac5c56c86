//! The command line: `check` on good and broken configs, `--version`, `--help`.

mod common;

use std::path::Path;

use common::run_cli;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_passes_on_every_shipped_config() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("conf")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = run_cli(&["check", "-c", path.to_str().unwrap()], None);
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
            assert!(
                out.contains("ok:") && out.contains("routes") && out.contains("pools"),
                "{out}"
            );
            n += 1;
        }
    }
    assert!(n >= 2, "expected conf/portcullis.toml and conf/demo.toml");
}

#[test]
fn check_reports_each_broken_config_with_location_and_exit_1() {
    let dir = repo().join("tests/fixtures/broken");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()))
            .trim()
            .to_string();
        let file = path.to_str().unwrap();
        let (code, _out, err) = run_cli(&["check", "-c", file], None);
        assert_eq!(code, 1, "{file} should fail: {err}");
        assert!(
            err.contains(&expect),
            "{file}: expected `{expect}` in:\n{err}"
        );
        // Every error line starts with file:line:col.
        let located = err.lines().any(|l| {
            l.strip_prefix(file)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|line| line.parse::<usize>().is_ok_and(|n| n > 0))
        });
        assert!(located, "{file}: no `{file}:LINE:COL:` prefix in:\n{err}");
        n += 1;
    }
    assert!(n >= 10, "only {n} broken fixtures");
}

#[test]
fn check_reports_all_errors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-errors.toml");
    std::fs::write(
        &path,
        "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n\n[[routes]]\nid = \"a\"\npath = \"/a\"\npool = \"x\"\n\n[[routes]]\nid = \"b\"\npath = \"/b\"\npool = \"y\"\n",
    )
    .unwrap();
    let (code, _out, err) = run_cli(&["check", path.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("\"x\"") && err.contains("\"y\""), "{err}");
    assert!(
        err.contains(":7:") && err.contains(":12:"),
        "line numbers missing: {err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _out, err) = run_cli(&["check", "-c", "/nonexistent/portcullis.toml"], None);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/portcullis.toml"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = run_cli(&["--version"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("portcullis "), "{out}");
    let (code, out, _) = run_cli(&["--help"], None);
    assert_eq!(code, 0);
    for cmd in ["run", "check", "demo"] {
        assert!(out.contains(cmd), "{out}");
    }
}

/// `keys new` prints the key alone on its first line and a config entry
/// whose digest is what `keys hash` makes of that key.
#[test]
fn keys_new_round_trips_through_keys_hash() {
    use std::io::Write;
    let (code, out, err) = run_cli(&["keys", "new", "--consumer", "acme"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("shown once"), "{err}");
    let mut lines = out.lines();
    let key = lines.next().unwrap();
    assert!(key.starts_with("pk_") && key.len() == 46, "{key}");
    let entry = out
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("config entry");
    let prefix = &key[..9];
    assert!(entry.contains(&format!("prefix = \"{prefix}\"")), "{entry}");
    // The printed entry is valid config for the consumer.
    let config = format!("[[consumers]]\nid = \"acme\"\nkeys = [{entry}]\nscopes = []\n");
    portcullis::config::parse_str(&config, "k.toml").unwrap_or_else(|e| panic!("{e}"));

    for input in [format!("{key}\n"), key.to_string()] {
        let mut child = std::process::Command::new(common::bin())
            .args(["keys", "hash"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let digest = String::from_utf8(out.stdout).unwrap();
        assert!(
            entry.contains(&format!("digest = \"{}\"", digest.trim())),
            "{digest} not in {entry}"
        );
    }
    // Two runs never give the same key.
    let (_, again, _) = run_cli(&["keys", "new", "--consumer", "acme"], None);
    assert_ne!(again.lines().next(), Some(key));
}

#[test]
fn keys_hash_without_input_fails() {
    let out = std::process::Command::new(common::bin())
        .args(["keys", "hash"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key"));
}

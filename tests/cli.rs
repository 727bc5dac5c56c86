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

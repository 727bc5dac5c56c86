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
        .find_map(|l| l.strip_prefix("keys = [")?.strip_suffix(']'))
        .expect("config entry");
    let prefix = &key[..9];
    assert!(entry.contains(&format!("prefix = \"{prefix}\"")), "{entry}");
    // What follows the key is a consumer block, valid config as printed,
    // holding the digest and prefix but never the key.
    let block: String = out.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(!block.contains(key), "{block}");
    let config = portcullis::config::parse_str(&block, "k.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.consumers.len(), 1);
    assert_eq!(config.consumers[0].id, "acme");
    assert!(block.contains("\nscopes = []"), "{block}");

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

/// Compare `actual` with the file `tests/fixtures/cli/NAME`; with
/// `UPDATE_EXPECTED=1`, write it instead (then review the diff).
fn expect_file(name: &str, actual: &str) {
    let path = repo().join("tests/fixtures/cli").join(name);
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECTED=1)", path.display()));
    assert_eq!(actual, expected, "{name} differs from the expected output");
}

fn conf(name: &str) -> String {
    repo().join("conf").join(name).to_str().unwrap().to_string()
}

#[test]
fn diff_between_the_shipped_configs() {
    let (code, out, err) = run_cli(
        &["diff", &conf("portcullis.toml"), &conf("demo.toml")],
        None,
    );
    assert_eq!(code, 1, "{err}");
    expect_file("diff-portcullis-demo.txt", &out);
    let (code, out, _) = run_cli(&["diff", &conf("demo.toml"), &conf("demo.toml")], None);
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
}

#[test]
fn diff_of_an_edited_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(conf("portcullis.toml")).unwrap();
    let edit = |text: &str, from: &str, to: &str| {
        assert!(
            text.contains(from),
            "the shipped config no longer has {from:?}"
        );
        text.replacen(from, to, 1)
    };
    // Lines moved (a comment on top), a backend added, a key removed, a
    // start-up setting changed.
    let mut edited = format!("# edited\n\n{shipped}");
    edited = edit(
        &edited,
        "\"127.0.0.1:9012\"]",
        "\"127.0.0.1:9012\", \"127.0.0.1:9013\"]",
    );
    edited = edit(&edited, "threads = 2", "threads = 4");
    edited = edit(&edited, "interval = \"5s\"", "interval = \"7s\"");
    let key = shipped
        .lines()
        .find(|l| l.contains("pk_7bTtzE"))
        .expect("key line");
    edited = edit(&edited, &format!("{key}\n"), "");
    let path = dir.path().join("edited.toml");
    std::fs::write(&path, &edited).unwrap();
    let (code, out, err) = run_cli(
        &["diff", &conf("portcullis.toml"), path.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        out,
        "~ pool orders-v1\n    health_check.interval: \"5s\" → \"7s\"\n~ pool orders-v2\n+ backend orders-v2 127.0.0.1:9013\n~ consumer acme\n- key acme pk_7bTtzE\n! restart required: server.threads\n"
    );
    // The same as JSON; a digest never appears in either form.
    let (_, json, _) = run_cli(
        &[
            "diff",
            "--json",
            &conf("portcullis.toml"),
            path.to_str().unwrap(),
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["keys"]["removed"][0], "acme pk_7bTtzE");
    assert_eq!(
        v["pools"]["fields"]["orders-v1"],
        serde_json::json!([{"field": "health_check.interval", "old": "5s", "new": "7s"}])
    );
    assert_eq!(v["restart_required"][0], "server.threads");
    let digest = key
        .split("digest = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(!json.contains(digest) && !out.contains(digest));

    // Moving lines alone is no change.
    std::fs::write(&path, format!("# moved\n\n{shipped}")).unwrap();
    let (code, out, _) = run_cli(
        &["diff", &conf("portcullis.toml"), path.to_str().unwrap()],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
}

#[test]
fn diff_of_a_broken_config_exits_2_with_located_errors() {
    let broken = repo().join("tests/fixtures/broken/unknown_pool.toml");
    let (code, out, err) = run_cli(
        &["diff", &conf("demo.toml"), broken.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("unknown_pool.toml:"), "{err}");
}

#[test]
fn explain_on_the_shipped_configs() {
    let cases: [(&str, &[&str], i32); 6] = [
        (
            "explain-rewrite.txt",
            &[
                "-c",
                &conf("portcullis.toml"),
                "GET",
                "http://api.example.com/v1/orders/42?x=1",
            ],
            1, // a key route, and no key given: 401
        ),
        (
            "explain-demo-key.txt",
            &[
                "-c",
                &conf("demo.toml"),
                "GET",
                "http://localhost/orders/7",
                "-H",
                "x-api-key: pk_demo-key-published-in-the-readme",
            ],
            0,
        ),
        (
            "explain-demo-wrong-key.txt",
            &[
                "-c",
                &conf("demo.toml"),
                "GET",
                "/orders/7",
                "-H",
                "x-api-key: pk_nope",
            ],
            1,
        ),
        (
            "explain-wildcard.txt",
            &[
                "-c",
                &conf("demo.toml"),
                "GET",
                "http://acme.demo.local/users?page=2",
            ],
            0,
        ),
        (
            "explain-405.txt",
            &["-c", &conf("demo.toml"), "DELETE", "/carts/1"],
            1,
        ),
        (
            "explain-404.txt",
            &["-c", &conf("demo.toml"), "GET", "/nowhere"],
            1,
        ),
    ];
    for (expected, args, want) in cases {
        let mut all = vec!["explain"];
        all.extend_from_slice(args);
        let (code, out, err) = run_cli(&all, None);
        assert_eq!(code, want, "{expected}: {out}{err}");
        expect_file(expected, &out);
        // Keys are never echoed.
        assert!(!out.contains("pk_demo-key-published") && !out.contains("pk_nope"));
    }
}

#[test]
fn explain_never_prints_a_key_given_in_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(conf("demo.toml")).unwrap().replace(
        "auth = \"api_key\"",
        "auth = \"api_key\"\nkey_from = \"query:api_key\"",
    );
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, config).unwrap();
    let key = "pk_demo-key-published-in-the-readme";
    let url = format!("http://localhost/orders/7?api_key={key}&page=2");
    let (code, out, err) = run_cli(
        &["explain", "-c", path.to_str().unwrap(), "GET", &url],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid: consumer \"demo\", key pk_demo-k"),
        "{out}"
    );
    assert!(
        out.contains("upstream          GET /orders/7?page=2\n"),
        "{out}"
    );
    assert!(!out.contains(key), "{out}");
}

#[test]
fn explain_shows_a_split_a_mirror_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[pools.v1]\nbackends = [\"127.0.0.1:1\"]\n[pools.v2]\nbackends = [\"127.0.0.1:2\"]\nh2c = true\nmax_h2_streams = 50\n[pools.shadow]\nbackends = [\"127.0.0.1:3\"]\n\
[[routes]]\nid = \"orders\"\npath = \"/orders\"\n\
[[routes.split]]\npool = \"v2\"\nweight = 5\nmatch = { header = { \"x-canary\" = \"always\" } }\n\
[[routes.split]]\npool = \"v1\"\nweight = 95\nsticky = { cookie = \"pc-split\" }\n\
[routes.mirror]\npool = \"shadow\"\npercent = 100\n\
[routes.compression]\nalgorithms = [\"br\", \"gzip\"]\n",
    )
    .unwrap();
    let explain = |headers: &[&str]| {
        let mut args = vec!["explain", "-c", path.to_str().unwrap(), "GET", "/orders/1"];
        for h in headers {
            args.extend(["-H", h]);
        }
        let (code, out, err) = run_cli(&args, None);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let out = explain(&["cookie: pc-split=42", "accept-encoding: gzip"]);
    assert!(
        out.contains("split             v2 5% (or with x-canary: always), v1 95%; sticky by cookie pc-split\n  chosen          v2, by the client's sticky value\npool              v2 "),
        "{out}"
    );
    assert!(
        out.contains(", HTTP/2 cleartext, up to 50 streams per connection)\n"),
        "{out}"
    );
    assert!(out.contains("mirror            pool shadow, 100% of forwarded requests, without the body, at most 100 in flight; this request would be copied"), "{out}");
    assert!(out.contains("compression       br 4, gzip 6 for "), "{out}");
    assert!(out.contains("; this client gets gzip\n"), "{out}");
    let out = explain(&["x-canary: always", "cookie: pc-split=9000"]);
    assert!(
        out.contains("  chosen          v2, by the request's headers (its match)\n"),
        "{out}"
    );
    assert!(
        out.contains("this client accepts none of them: sent as it is"),
        "{out}"
    );
    let out = explain(&[]);
    assert!(
        out.contains("by weights (a new client; the response sets the cookie)"),
        "{out}"
    );
}

#[test]
fn explain_refuses_what_is_not_a_request() {
    let (code, _, err) = run_cli(
        &[
            "explain",
            "-c",
            &conf("demo.toml"),
            "GET",
            "/x",
            "-H",
            "no colon",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("is not a header"), "{err}");
    let (code, _, err) = run_cli(&["explain", "-c", &conf("demo.toml"), "G E T", "/x"], None);
    assert_eq!(code, 2);
    assert!(err.contains("not an HTTP method"), "{err}");
}

/// `run`, `check` and `explain` without `-c` read the packaged path, never
/// a `conf/portcullis.toml` that happens to be in the working directory.
#[test]
fn the_default_config_is_the_packaged_path_not_one_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::copy(
        repo().join("conf/portcullis.toml"),
        dir.path().join("conf/portcullis.toml"),
    )
    .unwrap();
    let packaged = "/etc/portcullis/portcullis.toml";
    for args in [&["check"][..], &["explain", "GET", "/"][..]] {
        let (_code, out, err) = run_cli(args, Some(dir.path()));
        assert!(
            out.contains(packaged) || err.contains(packaged),
            "{args:?} should read {packaged}:\n{out}{err}"
        );
        assert!(!out.contains("conf/portcullis.toml"), "{args:?}: {out}");
    }
    let (_code, out, _err) = run_cli(&["run", "--help"], None);
    assert!(out.contains(packaged), "{out}");
}

/// `keys new` holds the consumer id to the config's rule, before making a
/// key, and says which rule.
#[test]
fn keys_new_refuses_a_consumer_id_the_config_would_refuse() {
    for bad in ["acme corp", "", "a/b", "ünï"] {
        let (code, out, err) = run_cli(&["keys", "new", "--consumer", bad], None);
        assert_eq!(code, 2, "{bad:?}: {out}{err}");
        assert!(out.is_empty(), "no key for {bad:?}: {out}");
        assert!(
            err.contains("consumer ids may only contain letters, digits, '_', '.' and '-'"),
            "{err}"
        );
    }
}

/// Relative paths in a config resolve against that file's own directory,
/// whatever the working directory: two copies in two directories each
/// read their own consumer files.
#[test]
fn diff_resolves_relative_paths_against_each_files_own_directory() {
    let (live, elsewhere, cwd) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let key = portcullis::keys::generate().unwrap();
    let main = "consumer_files = [\"consumers/*.toml\"]\n[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\nauth = \"api_key\"\n";
    for (dir, quota) in [(&live, 10), (&elsewhere, 20)] {
        std::fs::create_dir(dir.path().join("consumers")).unwrap();
        std::fs::write(dir.path().join("portcullis.toml"), main).unwrap();
        std::fs::write(
            dir.path().join("consumers/acme.toml"),
            format!(
                "[[consumers]]\nid = \"acme\"\nkeys = [{}]\nscopes = [{{ routes = [\"r\"] }}]\nquota = {{ day = {quota} }}\n",
                portcullis::keys::config_entry(&key.prefix, &key.digest_hex)
            ),
        )
        .unwrap();
    }
    let file = |d: &tempfile::TempDir| d.path().join("portcullis.toml").display().to_string();
    let (code, out, err) = run_cli(&["diff", &file(&live), &file(&elsewhere)], Some(cwd.path()));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("~ consumer acme\n    quotas"), "{out}");
    assert!(out.contains("10 → 20"), "{out}");
}

/// `diff --against-running FILE`: the running gateway prepares FILE (the
/// one it runs from, edited in place) and says what a reload would change,
/// applying nothing; any other file, a missing token or a broken file is
/// a clear exit 2.
#[tokio::test]
async fn diff_against_running_asks_the_gateway_and_applies_nothing() {
    let backend = common::Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let token = "admin-token-for-the-diff-test";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let digest = portcullis::keys::hex(&portcullis::keys::digest(token.as_bytes()));
    let config = |interval: &str, extra_listener: &str| {
        format!(
            "[server]\nwatch_config = false\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n{extra_listener}[admin]\naddress = \"127.0.0.1:0\"\ntoken_digest = \"{digest}\"\n\n{}[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n",
            common::pool("p", &[backend.addr], &format!("[pools.p.health_check]\ntype = \"tcp\"\ninterval = \"{interval}\"\n"))
        )
    };
    let main = dir.path().join("portcullis.toml");
    std::fs::write(&main, config("5s", "")).unwrap();
    let gw = common::TestGateway::start_file(&main).await;
    let admin = gw.admin_url("");
    let file = main.to_str().unwrap();
    let tokens = token_file.to_str().unwrap();
    let ask = |extra: &[&str]| {
        let mut args = vec!["diff", "--against-running", "--admin", &admin];
        args.extend_from_slice(extra);
        run_cli(&args, None)
    };

    // Unchanged: exit 0.
    let (code, out, err) = ask(&[file, "--token-file", tokens]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"), "{err}");

    // Edited in place: a live change and a start-up-only one.
    let spare = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &main,
        config("7s", &format!("[[listeners]]\naddress = \"{spare}\"\n\n")),
    )
    .unwrap();
    let (code, out, err) = ask(&[file, "--token-file", tokens]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "~ pool p\n    health_check.interval: \"5s\" → \"7s\"\n! restart required: listeners\n"
    );
    let (code, json, _) = ask(&[file, "--token-file", tokens, "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["pools"]["changed"][0], "p");
    assert_eq!(v["restart_required"][0], "listeners");
    // Nothing was applied.
    let c = common::client();
    let config_now: serde_json::Value = c
        .get(gw.admin_url("/-/config"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config_now["pools"]["p"]["health_check"]["interval"], "5s");
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"ok\"} 0"),
        "{metrics}"
    );

    // Another file than the one running.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, config("5s", "")).unwrap();
    let (code, _, err) = ask(&[other.to_str().unwrap(), "--token-file", tokens]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the gateway runs from") && err.contains("portcullis diff"),
        "{err}"
    );
    // No token.
    let (code, _, err) = ask(&[file]);
    assert_eq!(code, 2);
    assert!(err.contains("answered 401"), "{err}");
    // A broken file: the gateway's errors, with their positions.
    std::fs::write(
        &main,
        config("7s", "").replace("pool = \"p\"", "pool = \"nope\""),
    )
    .unwrap();
    let (code, _, err) = ask(&[file, "--token-file", tokens]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:", main.canonicalize().unwrap().display()))
            || err.contains(&format!("{file}:")),
        "{err}"
    );
    assert!(err.contains("a reload would be rejected"), "{err}");
    // Without --admin, the address comes from the file (here port 0, which
    // cannot be asked: a clear error, not a hang).
    std::fs::write(&main, config("5s", "")).unwrap();
    let (code, _, err) = run_cli(&["diff", "--against-running", file], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port 0") && err.contains("--admin"), "{err}");
}

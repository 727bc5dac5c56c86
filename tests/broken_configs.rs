//! Broken files of every kind — TOML, validation, a missing or garbage
//! certificate, a key that does not match its certificate, a garbage CA
//! bundle, an unreadable include — get the same errors, with file, line and
//! column, from `portcullis check` and from a reload; and the old config
//! keeps serving.

mod common;

use std::path::Path;

use common::{base_config, get_json, run_cli, single_route, Backend, TestGateway};

/// Write a self-signed certificate and its key as `NAME.crt`/`NAME.key`.
fn self_signed(dir: &Path, name: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gw.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// A config serving `/` from `backend`, plus `extra`, with a TLS listener
/// on `cert`/`key` when given.
fn config(backend: &Backend, tls: Option<(&str, &str)>, extra: &str) -> String {
    let mut c = single_route("p", &[backend.addr], "", "");
    if let Some((cert, key)) = tls {
        c.push_str(&format!(
            "\n[[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners.tls.certificates]]\ncert = \"{cert}\"\nkey = \"{key}\"\n"
        ));
    }
    c.push_str(extra);
    c
}

/// The line (1-based) of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .expect(prefix)
        + 1
}

#[tokio::test]
async fn check_and_reload_report_the_same_located_errors() {
    let backend = Backend::start("served").await;
    let gw = TestGateway::start(&config(&backend, None, "")).await;
    let dir = gw.config_path.parent().unwrap().to_path_buf();
    self_signed(&dir, "good");
    self_signed(&dir, "other");
    std::fs::write(dir.join("garbage.crt"), "this is not PEM\n").unwrap();
    std::fs::write(
        dir.join("garbage-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("a-directory.toml")).unwrap();

    let pool_ca = |ca: &str| {
        format!("[pools.tls]\nbackends = [\"127.0.0.1:9\"]\n[pools.tls.tls]\nca_file = \"{ca}\"\n")
    };
    // (what, config, the line the error must point at, text it must contain)
    let cases: Vec<(&str, String, usize, &str)> = {
        let syntax = format!("{}[pools.p\nbackends = []\n", base_config());
        let unknown_pool = config(
            &backend,
            None,
            "[[routes]]\nid = \"q\"\npath = \"/q\"\npool = \"nope\"\n",
        );
        let missing_cert = config(&backend, Some(("missing.crt", "good.key")), "");
        let garbage_cert = config(&backend, Some(("garbage.crt", "good.key")), "");
        let wrong_key = config(&backend, Some(("good.crt", "other.key")), "");
        let garbage_ca = config(&backend, None, &pool_ca("garbage-ca.pem"));
        let include = format!(
            "consumer_files = [\"a-directory.toml\"]\n{}",
            config(&backend, None, "")
        );
        vec![
            (
                "TOML syntax",
                syntax.clone(),
                line_of(&syntax, "[pools.p"),
                "unclosed table",
            ),
            (
                "validation",
                unknown_pool.clone(),
                line_of(&unknown_pool, "pool = \"nope\""),
                "\"nope\" is not defined",
            ),
            (
                "missing certificate",
                missing_cert.clone(),
                line_of(&missing_cert, "cert = "),
                "cannot read",
            ),
            (
                "garbage certificate",
                garbage_cert.clone(),
                line_of(&garbage_cert, "cert = "),
                "no certificate",
            ),
            (
                "key not matching",
                wrong_key.clone(),
                line_of(&wrong_key, "cert = "),
                "does not match",
            ),
            (
                "garbage CA",
                garbage_ca.clone(),
                line_of(&garbage_ca, "ca_file"),
                "ca_file",
            ),
            ("unreadable include", include.clone(), 1, "a-directory.toml"),
        ]
    };
    for (what, text, line, needle) in cases {
        gw.write_config(&text);
        let path = gw.config_path.to_str().unwrap();
        let (code, _, stderr) = run_cli(&["check", "-c", path], None);
        assert_eq!(code, 1, "{what}: check accepted it");
        let check_errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.ends_with("error(s)"))
            .collect();

        let (status, body) = gw.reload().await;
        assert_eq!(status, 422, "{what}: {body}");
        let reload_errors: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            check_errors, reload_errors,
            "{what}: check and reload disagree"
        );
        let first = &body["errors"][0];
        assert_eq!(first["line"], line, "{what}: {first}");
        assert!(first["column"].as_u64().unwrap() >= 1, "{what}: {first}");
        assert!(
            reload_errors[0].starts_with(&format!("{path}:{line}:")),
            "{what}: {}",
            reload_errors[0]
        );
        assert!(
            reload_errors.iter().any(|e| e.contains(needle)),
            "{what}: {reload_errors:?} lacks {needle:?}"
        );

        // The old config keeps serving.
        let (status, body) = get_json(&gw.url("/x")).await;
        assert_eq!(
            (status, body["backend"].as_str()),
            (200, Some("served")),
            "{what}"
        );
    }
    // Each rejected reload was counted.
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("portcullis_config_reloads_total{result=\"failed\"} 7"),
        "{metrics}"
    );
}

//! `deploy/kubernetes/` offline: every manifest passes
//! `kubernetes-validate --strict` (installed by `scripts/install-deps.sh
//! --test`), the gateway config in the ConfigMap passes `portcullis check`,
//! every file is listed in the kustomization, and the Deployment keeps the
//! promises an operator relies on (non-root, read-only root, probes on the
//! admin API, a termination grace period longer than the gateway's own).
//! The Containerfile copies the release binary into a non-root runtime.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The files kustomization.yaml names (resources and generator files).
fn listed() -> Vec<String> {
    read("kustomization.yaml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|l| l.ends_with(".yaml") || l.ends_with(".toml"))
        .map(str::to_string)
        .collect()
}

/// `kubernetes-validate --strict FILE`, as a Python module (no PATH needed).
fn validate(file: &Path) -> std::process::Output {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(file)
        .output()
        .expect("python3")
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let resources: Vec<String> = listed()
        .into_iter()
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert!(resources.len() >= 6, "{resources:?}");
    for f in &resources {
        let out = validate(&dir().join(f));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{f} (kubernetes-validate is installed by scripts/install-deps.sh --test):\n{text}"
        );
        assert!(text.contains("passed"), "{f} validated nothing:\n{text}");
    }
    // The validator can fail: an unknown field is refused.
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read("deployment.yaml").replace("replicas: 2", "replicas: 2\n  replika: 3"),
    )
    .expect("write");
    let out = validate(&bad);
    assert!(!out.status.success());
}

#[test]
fn the_configmap_config_passes_check_and_every_file_is_listed() {
    let (code, out, err) = common::run_cli(&["check", "portcullis.toml"], Some(&dir()));
    assert_eq!(code, 0, "{out}{err}");
    let listed = listed();
    for entry in std::fs::read_dir(dir()).expect("deploy/kubernetes") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is not in kustomization.yaml"
            );
        }
    }
}

/// The first number after `key:` in `text`.
fn number(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)?
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn the_deployment_is_hardened_and_stops_gracefully() {
    let d = read("deployment.yaml");
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "path: /readyz",
        "path: /healthz",
        "preStop:",
        "prometheus.io/scrape: \"true\"",
        "name: portcullis-config",
    ] {
        assert!(d.contains(needle), "deployment.yaml lacks {needle}");
    }
    let config = read("portcullis.toml");
    let grace = config
        .lines()
        .find_map(|l| l.strip_prefix("grace_period = \"")?.strip_suffix("s\""))
        .and_then(|s| s.parse::<u64>().ok())
        .expect("[server] grace_period in seconds");
    let pre_stop = number(&d, "seconds:");
    let termination = number(&d, "terminationGracePeriodSeconds:");
    assert!(
        termination > grace + pre_stop,
        "terminationGracePeriodSeconds {termination} must exceed grace_period {grace} + preStop {pre_stop}"
    );
    // The probes use the admin port the config listens on.
    assert!(config.contains("address = \"0.0.0.0:9090\""));
    assert!(d.contains("containerPort: 9090"));
    // While Redis is down, each replica allows its share of the HPA's
    // largest fleet.
    let instances = number(&config, "instances =");
    assert_eq!(instances, number(&read("hpa.yaml"), "maxReplicas:"));
}

#[test]
fn the_containerfile_builds_a_non_root_runtime_image() {
    let c = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"))
        .expect("Containerfile");
    let froms = c.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    assert!(c.contains("cargo build --release"));
    assert!(c.contains("distroless") && c.contains(":nonroot"));
    assert!(c.contains("USER 65532"));
}

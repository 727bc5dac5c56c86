//! The README and `docs/` stay true: the configuration reference lists
//! every key the config accepts and no key it refuses; the quickstart shows
//! the `curl` lines the demo prints; every relative link leads to a file;
//! no stray file (a test's log) is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The keys the config accepts in a table, asked of the parser itself: a
/// bogus key in `probe` (where `ZZ` stands) is refused with the list of
/// the table's keys.
fn accepted(probe: &str) -> BTreeSet<String> {
    let src = probe.replace("ZZ", "zz_not_a_key = 1");
    let errors = portcullis::config::parse_str(&src, "probe.toml")
        .expect_err("a bogus key is refused")
        .to_string();
    let list = errors
        .split("(keys here: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no key list for the probe:\n{probe}\n{errors}"));
    list.split(", ").map(str::to_string).collect()
}

const POOL: &str = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n";
const ROUTE: &str = "[[routes]]\nid = \"r\"\npath = \"/\"\npool = \"p\"\n";
const LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

/// (the table as the reference names it in a heading, a probe reaching it)
fn tables() -> Vec<(&'static str, String)> {
    vec![
        ("[server]", "[server]\nZZ\n".into()),
        ("[server.client]", "[server.client]\nZZ\n".into()),
        ("[[listeners]]", format!("{LISTENER}ZZ\n")),
        (
            "[listeners.tls]",
            format!("{LISTENER}[listeners.tls]\nZZ\n"),
        ),
        (
            "[[listeners.tls.certificates]]",
            format!("{LISTENER}[[listeners.tls.certificates]]\ncert = \"a\"\nkey = \"b\"\nZZ\n"),
        ),
        ("[admin]", "[admin]\nZZ\n".into()),
        ("[pools.NAME]", format!("{POOL}ZZ\n")),
        (
            "[pools.NAME.timeouts]",
            format!("{POOL}[pools.p.timeouts]\nZZ\n"),
        ),
        (
            "[pools.NAME.health_check]",
            format!("{POOL}[pools.p.health_check]\ntype = \"tcp\"\nZZ\n"),
        ),
        (
            "[pools.NAME.outlier]",
            format!("{POOL}[pools.p.outlier]\nZZ\n"),
        ),
        (
            "[pools.NAME.breaker]",
            format!("{POOL}[pools.p.breaker]\nZZ\n"),
        ),
        (
            "[pools.NAME.retry_budget]",
            format!("{POOL}[pools.p.retry_budget]\nZZ\n"),
        ),
        ("[pools.NAME.tls]", format!("{POOL}[pools.p.tls]\nZZ\n")),
        ("[[routes]]", format!("{POOL}{ROUTE}ZZ\n")),
        (
            "[routes.request_headers]",
            format!("{POOL}{ROUTE}[routes.request_headers]\nZZ\n"),
        ),
        (
            "[routes.response_headers]",
            format!("{POOL}{ROUTE}[routes.response_headers]\nZZ\n"),
        ),
        (
            "[routes.timeouts]",
            format!("{POOL}{ROUTE}[routes.timeouts]\nZZ\n"),
        ),
        (
            "[routes.cache]",
            format!("{POOL}{ROUTE}[routes.cache]\nZZ\n"),
        ),
        ("[cache]", "[cache]\nZZ\n".into()),
        ("[auth]", "[auth]\nZZ\n".into()),
        (
            "[auth.failed_attempts]",
            "[auth.failed_attempts]\nZZ\n".into(),
        ),
        (
            "[[consumers]]",
            "[[consumers]]\nid = \"c\"\nscopes = []\nZZ\n".into(),
        ),
        ("[access_log]", "[access_log]\nZZ\n".into()),
        ("[limit_store]", "[limit_store]\nZZ\n".into()),
        (
            "[[jwt_issuers]]",
            "[[jwt_issuers]]\nid = \"i\"\nissuer = \"x\"\nZZ\n".into(),
        ),
    ]
}

/// Tables written inline in a key's value: (table, key, a probe).
fn inline_tables() -> Vec<(&'static str, &'static str, String)> {
    let consumer = "[[consumers]]\nid = \"c\"\n";
    vec![
        (
            "[pools.NAME]",
            "backends",
            "[pools.p]\nbackends = [{ address = \"127.0.0.1:1\", ZZ }]\n".into(),
        ),
        (
            "[[routes]]",
            "rate_limits",
            format!("{POOL}{ROUTE}rate_limits = [{{ rate = \"1/s\", ZZ }}]\n"),
        ),
        (
            "[routes.cache]",
            "key",
            format!("{POOL}{ROUTE}[routes.cache]\nkey = {{ ZZ }}\n"),
        ),
        (
            "[[consumers]]",
            "keys",
            format!("{consumer}scopes = []\nkeys = [{{ ZZ }}]\n"),
        ),
        (
            "[[consumers]]",
            "scopes",
            format!("{consumer}scopes = [{{ ZZ }}]\n"),
        ),
        (
            "[[consumers]]",
            "rate_limits",
            format!("{consumer}scopes = []\nrate_limits = [{{ rate = \"1/s\", ZZ }}]\n"),
        ),
        (
            "[[consumers]]",
            "quota",
            format!("{consumer}scopes = []\nquota = {{ ZZ }}\n"),
        ),
        (
            "[[jwt_issuers]]",
            "rate_limits",
            "[[jwt_issuers]]\nid = \"i\"\nissuer = \"x\"\nrate_limits = [{ rate = \"1/s\", ZZ }]\n"
                .into(),
        ),
        (
            "[[jwt_issuers]]",
            "quota",
            "[[jwt_issuers]]\nid = \"i\"\nissuer = \"x\"\nquota = { ZZ }\n".into(),
        ),
    ]
}

/// The reference's tables: for each table named in a heading, the keys in
/// the first column of its key tables, with the text of each key's row.
/// A heading naming two tables gives its first key table to the first and
/// its second to the second; a heading naming none continues the table
/// before it.
fn documented(reference: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    let mut tables_seen = 0usize;
    let mut in_table = false;
    for line in reference.lines() {
        if line.starts_with('#') {
            let names: Vec<String> = line
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|t| t.starts_with('['))
                .map(str::to_string)
                .collect();
            if !names.is_empty() {
                current = names;
                tables_seen = 0;
            }
            in_table = false;
            continue;
        }
        let is_row = line.starts_with("| `");
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            in_table = true;
            tables_seen += 1;
        }
        if !is_row || current.is_empty() {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("");
        let keys: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        // The n-th key table of a heading naming several tables belongs to
        // the n-th of them (the last takes any further ones).
        let owner = &current[(tables_seen - 1).min(current.len() - 1)];
        let owners = [owner];
        for owner in owners {
            for key in &keys {
                out.entry(owner.clone())
                    .or_default()
                    .insert(key.to_string(), line.to_string());
            }
        }
    }
    out
}

#[test]
fn the_configuration_reference_documents_every_accepted_key_and_no_other() {
    let reference = read("docs/configuration.md");
    let mut docs = documented(&reference);
    // `[routes.request_headers]` and `[routes.response_headers]` share
    // one key table.
    if let Some(shared) = docs.get("[routes.request_headers]").cloned() {
        docs.entry("[routes.response_headers]".into())
            .or_insert(shared);
    }
    let mut problems = Vec::new();
    for (table, probe) in tables() {
        let keys = accepted(&probe);
        let Some(listed) = docs.get(table) else {
            problems.push(format!("{table}: no section in docs/configuration.md"));
            continue;
        };
        for key in &keys {
            // A key that is a table of its own has a heading instead.
            let own_table =
                reference.contains(&format!("{}.{key}]", table.trim_matches(['[', ']'])));
            if !listed.contains_key(key) && !own_table {
                problems.push(format!("{table}: `{key}` is accepted but not documented"));
            }
        }
        for key in listed.keys() {
            if !keys.contains(key) {
                problems.push(format!(
                    "{table}: `{key}` is documented but the config refuses it"
                ));
            }
        }
    }
    for (table, key, probe) in inline_tables() {
        let Some(row) = docs.get(table).and_then(|t| t.get(key)) else {
            problems.push(format!("{table}: `{key}` has no row"));
            continue;
        };
        for inner in accepted(&probe) {
            let named = row.contains(&format!("{inner} =")) || row.contains(&format!("`{inner}`"));
            if !named {
                problems.push(format!("{table}: `{key}` does not name its key `{inner}`"));
            }
        }
    }
    // Top-level keys: each table has a section, `consumer_files` a mention.
    for key in accepted("ZZ\n") {
        let mentioned = reference.contains(&format!("`[{key}]`"))
            || reference.contains(&format!("`[[{key}]]`"))
            || reference.contains(&format!("`[{key}.NAME]`"))
            || reference.contains(&format!("`{key}`"));
        if !mentioned {
            problems.push(format!("top level: `{key}` is accepted but not documented"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The quickstart shows exactly the lines `portcullis demo` prints for the
/// bundled config, in the same order.
#[test]
fn the_readme_quickstart_shows_what_the_demo_prints() {
    let config = portcullis::config::load(&repo().join("conf/demo.toml")).unwrap();
    let printed = portcullis::demo::try_lines(&config);
    assert!(printed.len() >= 8, "{printed:?}");
    let readme = read("README.md");
    let block: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != printed[0])
        .take(printed.len())
        .collect();
    assert_eq!(block, printed, "README quickstart vs `portcullis demo`");
}

/// Every relative link of the README and `docs/` leads to a file.
#[test]
fn relative_links_lead_to_files() {
    let mut pages = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            if target.starts_with("http")
                || target.starts_with('#')
                || target.starts_with("mailto:")
            {
                continue;
            }
            let file = target.split('#').next().unwrap_or("");
            let path = page.parent().unwrap().join(file);
            if !path.exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(pages.len() >= 10, "{pages:?}");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The README is the front door, not the reference.
#[test]
fn the_readme_stays_a_front_door() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines < 250,
        "README.md has {lines} lines: move reference material to docs/"
    );
    for must in [
        "make demo",
        "make test",
        "### Not yet",
        "docs/configuration.md",
    ] {
        assert!(readme.contains(must), "README.md lacks {must:?}");
    }
}

/// Nothing a test run leaves behind is committed (a `gw.log` was).
#[test]
fn no_log_files_are_committed() {
    if !repo().join(".git").exists() {
        return;
    }
    let out = std::process::Command::new("git")
        .args(["ls-files", "*.log", "**/*.log"])
        .current_dir(repo())
        .output()
        .expect("git");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.trim().is_empty(), "committed log files:\n{listed}");
    let ignore = read(".gitignore");
    assert!(ignore.lines().any(|l| l == "*.log"), "{ignore}");
}

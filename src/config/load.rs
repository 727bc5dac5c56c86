//! Reading a config from disk: the files its `consumer_files` names (paths
//! and glob patterns, relative to the main file), each read and parsed.
//! All file I/O and parsing of included files happens here, before
//! validation, which only checks what was read.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Locator};
use super::file::{self, ConsumersFile};

/// One file `consumer_files` named, read.
pub(crate) struct ConsumerSource {
    /// The path as displayed in messages.
    pub name: String,
    pub src: String,
    /// The parsed file, or its syntax error (naming this file).
    pub parsed: Result<ConsumersFile, ConfigError>,
}

/// What `consumer_files` brought in, and what went wrong finding or
/// reading the files (reported where the main file names them).
#[derive(Default)]
pub(crate) struct Included {
    pub consumer_files: Vec<ConsumerSource>,
    pub errors: Vec<ConfigError>,
}

/// `p` relative to the directory of the config file `base`.
pub(crate) fn resolve(base: &str, p: &str) -> PathBuf {
    let path = Path::new(p);
    match Path::new(base).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// Read and parse every file `patterns` (the main file's
/// `consumer_files`, located by `loc`) names, in order, each once.
pub(crate) fn consumer_files(patterns: &[Spanned<String>], loc: &Locator<'_>) -> Included {
    let mut included = Included::default();
    for (path, named_at) in consumer_paths(patterns, loc, &mut included.errors) {
        let name = path.display().to_string();
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                included.errors.push(loc.error(
                    named_at,
                    Some("consumer_files".to_string()),
                    format!("cannot read consumer file {name}: {e}"),
                ));
                continue;
            }
        };
        let parsed = file::parse_consumers(&src)
            .map_err(|e| super::parse_error(&Locator::new(&name, &src), &src, &e));
        included
            .consumer_files
            .push(ConsumerSource { name, src, parsed });
    }
    included
}

/// The files `patterns` name, in order, each once: a path, or a glob
/// pattern (`consumers.d/*.toml`) whose matches are taken in name order. A
/// pattern may match nothing if its directory exists.
fn consumer_paths(
    patterns: &[Spanned<String>],
    loc: &Locator<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(PathBuf, Range<usize>)> {
    let mut out: Vec<(PathBuf, Range<usize>)> = Vec::new();
    let mut error = |span: Range<usize>, message: String| {
        errors.push(loc.error(span, Some("consumer_files".to_string()), message));
    };
    for p in patterns {
        let text = p.get_ref();
        let path = resolve(loc.file(), text);
        if !text.contains(['*', '?', '[']) {
            if let Err(e) = std::fs::metadata(&path) {
                error(
                    p.span(),
                    format!("cannot read consumer file {}: {e}", path.display()),
                );
            } else if !out.iter().any(|(p, _)| *p == path) {
                out.push((path, p.span()));
            }
            continue;
        }
        let pattern = path.to_string_lossy().into_owned();
        let matches = match glob::glob(&pattern) {
            Ok(m) => m,
            Err(e) => {
                error(
                    p.span(),
                    format!("{text:?} is not a valid glob pattern: {e}"),
                );
                continue;
            }
        };
        let dir_missing = path
            .parent()
            .filter(|d| !d.to_string_lossy().contains(['*', '?', '[']))
            .is_some_and(|d| !d.is_dir());
        if dir_missing {
            error(
                p.span(),
                format!("the directory of {} does not exist", path.display()),
            );
            continue;
        }
        for m in matches {
            match m {
                Ok(file) if file.is_file() && !out.iter().any(|(p, _)| *p == file) => {
                    out.push((file, p.span()))
                }
                Ok(_) => {}
                Err(e) => error(p.span(), format!("cannot read {}: {e}", e.path().display())),
            }
        }
    }
    out
}

//! `[routes.compression]`.

use toml::Spanned;

use super::{is_token, Validator};
use crate::config::file::CompressionFile;
use crate::config::model::{
    Coding, CompressionConfig, DEFAULT_COMPRESSION_MIN_SIZE, DEFAULT_COMPRESSION_TYPES,
};

impl Validator<'_> {
    pub(super) fn compression(
        &mut self,
        f: &CompressionFile,
        item: &str,
    ) -> Option<CompressionConfig> {
        let errors_before = self.errors.len();
        let mut codings: Vec<Coding> = Vec::new();
        match &f.algorithms {
            None => codings.extend(Coding::ALL),
            Some(list) => {
                for a in list.get_ref() {
                    let Some(c) = Coding::ALL.into_iter().find(|c| c.as_str() == a.get_ref())
                    else {
                        self.error(
                            a.span(),
                            Some(item),
                            format!(
                                "compression: unknown algorithm {:?}; expected \"zstd\", \"br\" or \"gzip\"",
                                a.get_ref()
                            ),
                        );
                        continue;
                    };
                    if codings.contains(&c) {
                        self.error(
                            a.span(),
                            Some(item),
                            format!("compression: {:?} is listed twice", a.get_ref()),
                        );
                        continue;
                    }
                    codings.push(c);
                }
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        Some(item),
                        "compression.algorithms is empty: nothing would be compressed; list algorithms or remove the table",
                    );
                }
            }
        }
        let levels = self.levels(f.level.as_ref(), &codings, item);
        let min_size = f
            .min_size
            .as_ref()
            .map_or(DEFAULT_COMPRESSION_MIN_SIZE, |s| {
                self.size(s, "compression.min_size", item).unwrap_or(0)
            });
        let types = match &f.types {
            None => DEFAULT_COMPRESSION_TYPES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        Some(item),
                        "compression.types is empty: nothing would be compressed; list media types or remove the table",
                    );
                }
                list.get_ref()
                    .iter()
                    .filter_map(|t| {
                        let text = t.get_ref().to_ascii_lowercase();
                        let ok = text.split_once('/').is_some_and(|(ty, sub)| {
                            is_token(ty) && ty != "*" && (sub == "*" || is_token(sub))
                        });
                        if !ok {
                            self.error(
                                t.span(),
                                Some(item),
                                format!(
                                    "compression.types: {:?} is not a media type (\"type/subtype\" or \"type/*\")",
                                    t.get_ref()
                                ),
                            );
                        }
                        ok.then_some(text)
                    })
                    .collect()
            }
        };
        (self.errors.len() == errors_before).then(|| CompressionConfig {
            algorithms: codings.into_iter().zip(levels).collect(),
            min_size,
            types,
        })
    }

    /// `level`: one number for every algorithm, or a table by algorithm
    /// (the others keep their defaults); each within its encoder's range.
    fn levels(
        &mut self,
        level: Option<&Spanned<toml::Value>>,
        codings: &[Coding],
        item: &str,
    ) -> Vec<u32> {
        let mut levels: Vec<u32> = codings.iter().map(|c| c.default_level()).collect();
        let Some(level) = level else {
            return levels;
        };
        let span = level.span();
        let mut set = |this: &mut Self, coding: Coding, value: &toml::Value| {
            let n = value.as_integer().and_then(|n| u32::try_from(n).ok());
            match n {
                Some(n) if coding.levels().contains(&n) => {
                    if let Some(i) = codings.iter().position(|c| *c == coding) {
                        levels[i] = n;
                    }
                }
                _ => this.error(
                    span.clone(),
                    Some(item),
                    format!(
                        "compression.level: {value} is not a {} level ({} to {})",
                        coding.as_str(),
                        coding.levels().start(),
                        coding.levels().end()
                    ),
                ),
            }
        };
        match level.get_ref() {
            toml::Value::Integer(_) => {
                for c in codings {
                    set(self, *c, level.get_ref());
                }
            }
            toml::Value::Table(table) => {
                for (name, value) in table {
                    match Coding::ALL.into_iter().find(|c| c.as_str() == name) {
                        Some(c) => set(self, c, value),
                        None => self.error(
                            span.clone(),
                            Some(item),
                            format!("compression.level: unknown algorithm {name:?}"),
                        ),
                    }
                }
            }
            other => self.error(
                span,
                Some(item),
                format!(
                    "compression.level: expected a number or a table like {{ gzip = 6, br = 4 }}, not {other}"
                ),
            ),
        }
        levels
    }
}

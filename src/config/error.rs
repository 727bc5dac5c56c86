//! Configuration errors.
//!
//! Every error names the file, the 1-based line and column of the offending
//! value and, where there is one, the item it belongs to (`route "orders-v2"`,
//! `pool "orders"`, `listener "0.0.0.0:8080"`). The types carry no serde
//! derives on purpose: their fields are public, so the admin API can render
//! them as JSON by hand.

use std::fmt;
use std::ops::Range;

/// One problem found in a configuration file.
///
/// Displays as `file:line:column: item: message`, for example
/// `conf/portcullis.toml:41:9: route "orders-v2": pool "orderz" is not defined`.
/// The item part is left out when `item` is `None`; line and column are left
/// out when `line` is 0 (an error about the whole file, such as "cannot read").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name, as given to [`load`](super::load) or
    /// [`parse_str`](super::parse_str).
    pub file: String,
    /// 1-based line; 0 when the error is not about a position in the file.
    pub line: usize,
    /// 1-based column, counted in characters; 0 together with `line`.
    pub column: usize,
    /// The item the error belongs to, e.g. `route "orders-v2"` or `pool "orders"`.
    pub item: Option<String>,
    /// What is wrong, on one line.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (no position), e.g. it cannot be read.
    pub fn whole_file(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            item: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if let Some(item) = &self.item {
            write!(f, "{item}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one configuration file, in file order.
///
/// Displays as one error per line (no trailing newline). Never empty when
/// returned by [`load`](super::load) or [`parse_str`](super::parse_str).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Iterate over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no error (never the case for a returned value).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Turns byte spans of one source text into [`ConfigError`]s with line and
/// column.
pub(crate) struct Locator<'a> {
    file: &'a str,
    src: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(file: &'a str, src: &'a str) -> Self {
        Locator { file, src }
    }

    /// The file name used in messages.
    pub(crate) fn file(&self) -> &'a str {
        self.file
    }

    /// The text the positions refer to.
    pub(crate) fn src(&self) -> &'a str {
        self.src
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    /// Offsets past the end (or inside a character) are clamped.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An error at the start of `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        item: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            item,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, column: usize, item: Option<&str>, message: &str) -> ConfigError {
        ConfigError {
            file: "f.toml".into(),
            line,
            column,
            item: item.map(str::to_string),
            message: message.into(),
        }
    }

    #[test]
    fn display_with_item() {
        let e = error(3, 9, Some(r#"route "a""#), r#"pool "x" is not defined"#);
        assert_eq!(
            e.to_string(),
            r#"f.toml:3:9: route "a": pool "x" is not defined"#
        );
    }

    #[test]
    fn display_without_item() {
        let e = error(1, 1, None, "expected `]`");
        assert_eq!(e.to_string(), "f.toml:1:1: expected `]`");
    }

    #[test]
    fn display_without_position() {
        let e = ConfigError::whole_file("f.toml", "cannot read: No such file");
        assert_eq!(e.to_string(), "f.toml: cannot read: No such file");
    }

    #[test]
    fn errors_display_one_per_line() {
        let errors = ConfigErrors(vec![
            error(1, 2, None, "one"),
            error(3, 4, Some("pool \"p\""), "two"),
        ]);
        assert_eq!(
            errors.to_string(),
            "f.toml:1:2: one\nf.toml:3:4: pool \"p\": two"
        );
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn line_col_counts_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        let loc = Locator::new("f.toml", src);
        assert_eq!(loc.line_col(0), (1, 1));
        assert_eq!(loc.line_col(4), (1, 5));
        assert_eq!(loc.line_col(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters: the quote is column 6.
        let quote = src.find('"').unwrap();
        assert_eq!(loc.line_col(quote), (2, 6));
        assert_eq!(loc.line_col(10_000), (3, 1));
    }
}

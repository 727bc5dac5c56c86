//! API keys: generation, digests and the non-secret prefix.
//!
//! A key is `pk_` followed by 256 random bits from the system RNG in
//! URL-safe base64 (43 characters). Only its SHA-256 digest is ever stored;
//! its first [`PREFIX_LEN`] characters (`pk_` and six more, 36 of the 256
//! bits) are the prefix that names it in logs and the admin API.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// Every generated key starts with this.
pub const KEY_MARK: &str = "pk_";
/// Random bytes in a generated key (256 bits).
pub const KEY_BYTES: usize = 32;
/// Characters of a key kept as its non-secret prefix (`pk_` + 6).
pub const PREFIX_LEN: usize = KEY_MARK.len() + 6;

/// A freshly generated key. `key` is shown once and never stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub digest_hex: String,
}

/// Generate a key from the operating system's RNG.
pub fn generate() -> Result<NewKey, ring::error::Unspecified> {
    let mut bytes = [0u8; KEY_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    let key = format!(
        "{KEY_MARK}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let prefix = key[..PREFIX_LEN].to_string();
    let digest_hex = hex(&digest(key.as_bytes()));
    Ok(NewKey {
        key,
        prefix,
        digest_hex,
    })
}

/// SHA-256 of a key as presented.
pub fn digest(key: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// A digest as written in the config: 64 hex digits (either case), with
/// an optional `sha256:` in front.
pub fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The config entry for a key: what `portcullis keys new` prints.
pub fn config_entry(prefix: &str, digest_hex: &str) -> String {
    format!("{{ prefix = \"{prefix}\", digest = \"{digest_hex}\" }}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_digest_round_trips() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.key, b.key);
        assert_eq!(a.key.len(), KEY_MARK.len() + 43);
        assert!(a.key.starts_with(KEY_MARK) && a.key.starts_with(&a.prefix));
        assert!(a.key[KEY_MARK.len()..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(a.digest_hex, hex(&digest(a.key.as_bytes())));
        assert_eq!(parse_digest(&a.digest_hex), Some(digest(a.key.as_bytes())));
    }

    #[test]
    fn digests() {
        let hex = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let d = parse_digest(hex).unwrap();
        assert_eq!(d[0], 0x9f);
        assert_eq!(d[31], 0x08);
        assert_eq!(parse_digest(&format!("sha256:{hex}")), Some(d));
        assert_eq!(parse_digest(&hex[1..]), None);
        assert_eq!(parse_digest(&hex.replace('F', "g")), None);
        assert_eq!(parse_digest("é"), None);
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex(&digest(b"test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}

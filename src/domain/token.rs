//! Token format: generation, parsing and digest.
//!
//! A token is the prefix `pit-`, then 44 base62 characters carrying 256 random bits from ring's
//! `SystemRandom`, then 6 base62 characters of CRC32 over the random part.
//! The checksum lets a mistyped or truncated token be refused without any lookup, and the fixed
//! prefix lets secret scanners recognise leaked tokens.
//! Only [`TokenHash`] (SHA-256 of the whole token) is ever stored, cached or looked up.

use std::fmt;

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

/// The prefix of every token privint issues.
///
/// NEVER CHANGE THE PREFIX OF EXISTING TOKENS!!! Secret scanners and every integration
/// already in the field recognise tokens by it; changing it breaks them and lets leaked
/// tokens go unnoticed.
pub const TOKEN_PREFIX: &str = "pit-";

/// Base62 characters that carry the 256 random bits: two `u128`s of 22 characters each.
const RANDOM_LEN: usize = 44;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// The length of every token.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;

/// A token in plain text, which leaves the process exactly once: in the response that made it.
pub struct PlainToken(SecretString);

impl PlainToken {
    /// Generates a new token from 256 bits of system randomness.
    ///
    /// # Errors
    /// Returns [`TokenError::Randomness`] if the system random source fails.
    pub fn generate(rng: &SystemRandom) -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| TokenError::Randomness)?;
        let (high, low) = bytes.split_at(16);
        let high = u128::from_be_bytes(high.try_into().expect("32 bytes split in halves of 16"));
        let low = u128::from_be_bytes(low.try_into().expect("32 bytes split in halves of 16"));
        let random = format!("{:0>22}{:0>22}", base62::encode(high), base62::encode(low));
        let checksum = checksum(&random);
        Ok(Self(SecretString::from(format!(
            "{TOKEN_PREFIX}{random}{checksum}"
        ))))
    }

    /// Parses a token, accepting also a raw `Authorization` header value (`Bearer pit-...`).
    ///
    /// # Errors
    /// Returns [`TokenError::Malformed`] unless prefix, length, alphabet and checksum are right.
    pub fn parse(input: &str) -> Result<Self, TokenError> {
        validate(input).map(|token| Self(SecretString::from(token.to_owned())))
    }

    /// Returns the digest under which this token is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose())
    }

    /// Returns the display hint kept beside the digest: the prefix and the last four characters.
    pub fn hint(&self) -> String {
        let token = self.expose();
        format!("{TOKEN_PREFIX}…{}", &token[token.len() - 4..])
    }

    /// Returns the plain token, for the one response that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainToken(..)")
    }
}

/// Returns the token within `input` (bare, or after `Bearer `) if its format is right.
/// It copies nothing, so the Authorize path can digest a token without holding a copy.
fn validate(input: &str) -> Result<&str, TokenError> {
    let input = input.trim();
    let token = match input.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
        Some(_) => return Err(TokenError::Malformed),
        None => input,
    };
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenError::Malformed);
    }
    let (random, given_checksum) = body.split_at(RANDOM_LEN);
    // Every value below 62^6 has exactly one 6-character form, so comparing values compares strings.
    if base62::decode(given_checksum) != Ok(u128::from(crc32fast::hash(random.as_bytes()))) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Returns the CRC32 of the random part, as 6 base62 characters.
fn checksum(random: &str) -> String {
    format!("{:0>6}", base62::encode(crc32fast::hash(random.as_bytes())))
}

/// The SHA-256 digest of a token: the only form in which privint keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Returns the digest of the token in `input` (bare or `Bearer ...`) without copying it.
    ///
    /// # Errors
    /// Returns [`TokenError::Malformed`] as [`PlainToken::parse`] does.
    pub fn parse(input: &str) -> Result<Self, TokenError> {
        validate(input).map(Self::of)
    }

    /// Returns the digest of a token string.
    fn of(token: &str) -> Self {
        let digest = digest::digest(&digest::SHA256, token.as_bytes());
        Self(
            digest
                .as_ref()
                .try_into()
                .expect("SHA-256 digests are 32 bytes"),
        )
    }

    /// Rebuilds a digest read back from storage.
    ///
    /// # Errors
    /// Returns [`TokenError::Malformed`] unless `bytes` has 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| TokenError::Malformed)
    }

    /// Returns the digest's bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Why a token could not be made or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("system random source failed")]
    Randomness,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn generate() -> PlainToken {
        PlainToken::generate(&SystemRandom::new()).expect("system randomness")
    }

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let token = generate();
        assert_eq!(token.expose().len(), TOKEN_LEN);
        assert!(token.expose().starts_with("pit-"));
        assert_eq!(format!("{token:?}"), "PlainToken(..)");
        assert_eq!(format!("{:?}", token.hash()), "TokenHash(..)");
        assert!(token.hint().starts_with("pit-…"));
        assert!(token.expose().ends_with(&token.hint()["pit-…".len()..]));
    }

    #[test]
    fn bearer_header_values_parse_to_the_same_digest() {
        let token = generate();
        for input in [
            format!("Bearer {}", token.expose()),
            format!("bearer  {} ", token.expose()),
        ] {
            assert_eq!(
                PlainToken::parse(&input).expect("parses").hash(),
                token.hash()
            );
        }
        for input in [
            format!("Basic {}", token.expose()),
            String::new(),
            "pit-".to_owned(),
        ] {
            assert_eq!(
                PlainToken::parse(&input).unwrap_err(),
                TokenError::Malformed
            );
        }
    }

    proptest! {
        #[test]
        fn generate_parse_digest_round_trips(_seed in any::<u64>()) {
            let token = generate();
            let parsed = PlainToken::parse(token.expose()).expect("a generated token parses");
            prop_assert_eq!(parsed.expose(), token.expose());
            prop_assert_eq!(parsed.hash(), token.hash());
        }

        #[test]
        fn any_single_character_change_is_malformed(position in 0..TOKEN_LEN, replacement in any::<char>()) {
            let token = generate();
            let mut chars: Vec<char> = token.expose().chars().collect();
            prop_assume!(chars[position] != replacement);
            chars[position] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert_eq!(PlainToken::parse(&changed).unwrap_err(), TokenError::Malformed);
        }

        #[test]
        fn the_copy_free_digest_agrees(_seed in any::<u64>()) {
            let token = generate();
            prop_assert_eq!(TokenHash::parse(&format!("Bearer {}", token.expose())), Ok(token.hash()));
        }

        #[test]
        fn any_truncation_is_malformed(keep in 0..TOKEN_LEN) {
            let token = generate();
            prop_assert!(PlainToken::parse(&token.expose()[..keep]).is_err());
        }
    }
}

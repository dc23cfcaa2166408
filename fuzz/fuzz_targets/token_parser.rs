//! The token parser: any string is a token or an error, never a panic; a token it accepts
//! reads back as itself (without surrounding whitespace or a `Bearer ` scheme), with the same
//! digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privint::domain::token::{PlainToken, TokenHash};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = PlainToken::parse(input) {
        // Surrounding whitespace (as pasted) and a `Bearer ` scheme are not part of the token.
        assert!(input.trim().ends_with(token.expose()));
        assert!(token.expose().starts_with("pit-") && token.expose().len() == 54);
        let again = PlainToken::parse(token.expose()).expect("a parsed token parses again");
        assert_eq!(again.hash().as_bytes(), token.hash().as_bytes());
        assert!(
            token.hint().len() < input.len(),
            "the hint never holds the token"
        );
    }
    if let Ok(hash) = TokenHash::parse(input) {
        let bytes = hash.as_bytes();
        assert_eq!(
            TokenHash::from_bytes(bytes).expect("32 bytes").as_bytes(),
            bytes
        );
    }
});

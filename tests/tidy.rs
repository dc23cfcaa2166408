//! Layering and hygiene rules of STYLE.md, checked on the source tree.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|it| it == "rs") {
            files.push(path);
        }
    }
    files
}

fn source(path: &Path) -> String {
    fs::read_to_string(path).expect("readable source file")
}

fn src(sub: &str) -> Vec<PathBuf> {
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(sub))
}

#[test]
fn domain_knows_no_protocol_database_or_runtime() {
    for path in src("domain") {
        let text = source(&path);
        for forbidden in [
            "tonic",
            "prost",
            "sea_orm",
            "tokio::",
            "Utc::now",
            "now_v7",
            "new_v4",
            "crate::store",
            "crate::grpc",
            "crate::service",
            "crate::index",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}",
                path.display()
            );
        }
    }
}

#[test]
fn only_grpc_sees_protobuf_and_status() {
    for path in src("") {
        // The server's edge is `grpc`; the command-line client is the other end of the wire.
        let edge = |dir: &str| path.components().any(|it| it.as_os_str() == dir);
        if edge("grpc") || edge("cli") {
            continue;
        }
        let text = source(&path);
        for forbidden in ["pb::", "tonic::Status", "Status::"] {
            assert!(
                !mentions_word(&text, forbidden),
                "{} mentions {forbidden}",
                path.display()
            );
        }
    }
}

/// Returns true if `word` occurs in `text` not as the tail of a longer name (`ServingStatus::`).
fn mentions_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        !text[..at]
            .chars()
            .next_back()
            .is_some_and(|before| before.is_alphanumeric() || before == '_')
    })
}

#[test]
fn only_store_sees_entities() {
    for path in src("") {
        if path.components().any(|it| it.as_os_str() == "store") {
            continue;
        }
        assert!(
            !mentions_word(&source(&path), "entity::"),
            "{} mentions entity::",
            path.display()
        );
    }
}

#[test]
fn no_unwrap_in_grpc() {
    for path in src("grpc") {
        assert!(
            !source(&path).contains(".unwrap()"),
            "{} calls unwrap()",
            path.display()
        );
    }
}

#[test]
fn every_instrument_skips_its_arguments() {
    for path in src("") {
        for line in source(&path)
            .lines()
            .filter(|line| line.contains("#[instrument") || line.contains("#[tracing::instrument"))
        {
            assert!(line.contains("skip"), "{}: {line}", path.display());
        }
    }
}

#[test]
fn the_token_prefix_never_changes() {
    assert_eq!(
        privint::domain::token::TOKEN_PREFIX,
        "pit-",
        "NEVER change the prefix of existing tokens"
    );
}

#[test]
fn the_command_line_is_not_the_grpc_layer() {
    for path in src("grpc") {
        let text = source(&path);
        assert!(
            !text.contains("clap"),
            "{} parses a command line: that belongs in src/cli",
            path.display()
        );
    }
    for path in src("cli") {
        assert!(
            !source(&path).contains("Status::"),
            "{} builds a gRPC status: the client only reads them",
            path.display()
        );
    }
}

/// The most lines a source file has before it must say why it is that long.
const MAX_LINES: usize = 400;

#[test]
fn long_files_say_why() {
    for path in src("") {
        let text = source(&path);
        let lines = text.lines().count();
        assert!(
            lines <= MAX_LINES
                || text
                    .lines()
                    .take(20)
                    .any(|line| line.starts_with("//! Size:")),
            "{} has {lines} lines: split it by concern, or say why not in a `//! Size:` line at its top",
            path.display()
        );
    }
}

//! Configuration: defaults, file, environment; validation fails fast; the scope catalog can be replaced.

mod common;

use std::sync::Arc;

use common::{Backend, TestApp, TestDb};
use privint::config::{Config, Settings};
use privint::grpc::pb;

#[test]
fn file_then_environment_override_defaults() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("privint.toml");
    std::fs::write(&file, "listen_addr = \"0.0.0.0:6000\"\nmax_message_bytes = 4096\n[rotation]\ndefault_grace = \"3d\"\n").expect("write");
    // Only this test sets APP__ variables in this process.
    unsafe { std::env::set_var("APP__ROTATION__MAX_GRACE", "10d") };
    let settings = Settings::load(Some(&file)).expect("valid");
    unsafe { std::env::remove_var("APP__ROTATION__MAX_GRACE") };
    let config = Config::try_from(settings).expect("valid");
    assert_eq!(config.listen_addr.to_string(), "0.0.0.0:6000");
    assert_eq!(config.max_message_bytes, 4096);
    assert_eq!(config.rotation.default_grace, chrono::Duration::days(3));
    assert_eq!(config.rotation.max_grace, chrono::Duration::days(10));
    assert_eq!(
        config.rotation.rotation_age,
        chrono::Duration::days(90),
        "a default"
    );
    assert!(Settings::load(Some(&dir.path().join("missing.toml"))).is_err());
}

#[test]
fn invalid_settings_fail_with_a_clear_message() {
    #[track_caller]
    fn check(change: impl FnOnce(&mut Settings), expected: &str) {
        let mut settings = Settings::default();
        change(&mut settings);
        let err = Config::try_from(settings).expect_err("invalid");
        assert!(err.contains(expected), "{err}");
    }
    check(|it| it.listen_addr = "nowhere".to_owned(), "listen_addr");
    check(
        |it| it.database_url = "mysql://x".to_owned(),
        "database_url",
    );
    check(
        |it| it.rotation.default_grace = std::time::Duration::from_secs(40 * 24 * 3600),
        "default_grace",
    );
    check(
        |it| it.scopes_file = Some("/no/such/file.toml".into()),
        "scopes_file",
    );
    check(
        |it| it.tls.cert_file = Some("/no/such/cert.pem".into()),
        "tls",
    );
    check(
        |it| it.cors_allowed_origins = vec!["bad\norigin".to_owned()],
        "origin",
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("privint.toml");
    std::fs::write(&file, "listen_adr = \"0.0.0.0:6000\"\n").expect("write");
    let err = Settings::load(Some(&file)).err().expect("unknown key");
    assert!(err.contains("listen_adr"), "{err}");
}

#[test]
fn secrets_are_not_printed() {
    let settings = Settings {
        database_url: "postgres://privint:hunter2-password@db/privint".to_owned(),
        auth: privint::config::AuthSettings {
            hs256_secret: Some("s".repeat(40).into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let printed = format!(
        "{:?} {:?}",
        settings.auth,
        Config::try_from(settings.clone()).expect("valid")
    );
    assert!(
        !printed.contains("hunter2") && !printed.contains(&"s".repeat(40)),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_catalog_can_be_replaced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let catalog = dir.path().join("scopes.toml");
    let text = "[[scope]]\nname = \"reports.readonly\"\ndescription = \"Read reports\"\nendpoints = [\"GET /reports\"]\nlevels = [\"location\", \"agency\"]\n";
    std::fs::write(&catalog, text).expect("write");
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.scopes_file = Some(catalog);
    let app = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let mut api = app.api().await;
    let scopes = api
        .list_scopes(pb::ListScopesRequest::default())
        .await
        .expect("scopes")
        .into_inner()
        .scopes;
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0].name, "reports.readonly");
    assert_eq!(
        scopes[0].levels().collect::<Vec<_>>(),
        [pb::Level::Location, pb::Level::Agency]
    );
    api.create_integration(common::location_integration(
        "Reports",
        &["reports.readonly"],
    ))
    .await
    .expect("the new scope is grantable");
    let status = api
        .create_integration(common::location_integration(
            "Contacts",
            &["contacts.readonly"],
        ))
        .await
        .expect_err("the old catalog is gone");
    common::assert_violation(&status, "scopes");
}

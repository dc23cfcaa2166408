//! The README walk-through, run with the real `privint` binary as the client of a real server.

mod common;

use std::process::Command;

use common::{Backend, TestApp};

/// Runs `privint args...` against `app`; returns stdout, failing on a non-zero exit.
fn privint(app: &TestApp, jwt: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_privint"));
    command
        .args(args)
        .env("PRIVINT_ADDR", format!("http://{}", app.addr))
        .env("APP__AUTH__HS256_SECRET", common::SECRET)
        .env_remove("PRIVINT_JWT");
    if let Some(jwt) = jwt {
        command.env("PRIVINT_JWT", jwt);
    }
    let output = command.output().expect("run privint");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        output.status.success(),
        "privint {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json_str<'a>(value: &'a serde_json::Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name} in {value}"))
}

fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walk_through() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let jwt = privint(
        &app,
        None,
        &["dev-jwt", "--agency", "agency1", "--role", "agency_admin"],
    );
    let jwt = Some(jwt.trim());

    let scopes = privint(&app, jwt, &["scopes", "--level", "location"]);
    assert!(scopes.contains("contacts.readonly") && !scopes.contains("companies.readonly"));
    let created = privint(
        &app,
        jwt,
        &[
            "create",
            "--agency",
            "agency1",
            "--location",
            "loc1",
            "--name",
            "Zapier",
            "--scope",
            "contacts.readonly",
            "--scope",
            "contacts.write",
            "--json",
        ],
    );
    // As the README does with jq: the id and the token from the JSON output.
    let created: serde_json::Value = serde_json::from_str(&created).expect("one JSON object");
    let (id, t1) = (json_str(&created, "id"), json_str(&created, "token"));
    assert!(t1.starts_with("pit-"));

    let authorize = |token: &str, extra: &[&str]| {
        let mut args = vec!["authorize", "--token", token, "--location", "loc1"];
        args.extend_from_slice(extra);
        privint(&app, None, &args)
    };
    assert!(authorize(t1, &["--scope", "contacts.readonly"]).starts_with("ALLOW"));
    let denied = authorize(t1, &["--scope", "calendars.write"]);
    assert!(
        denied.contains("DENY MISSING_SCOPES") && denied.contains("calendars.write"),
        "{denied}"
    );
    let elsewhere = privint(
        &app,
        None,
        &["authorize", "--token", t1, "--location", "loc2"],
    );
    assert_eq!(elsewhere.trim(), "DENY WRONG_ACCOUNT");

    let rotated = privint(&app, jwt, &["rotate", id, "--grace", "1h", "--json"]);
    let rotated: serde_json::Value = serde_json::from_str(&rotated).expect("one JSON object");
    let t2 = json_str(&rotated, "token");
    let old = authorize(t1, &[]);
    assert!(
        old.starts_with("ALLOW") && old.contains("previous token"),
        "{old}"
    );
    assert!(authorize(t2, &[]).starts_with("ALLOW"));

    privint(&app, jwt, &["cancel-rotation", id]);
    assert!(authorize(t2, &[]).contains("DENY REVOKED_TOKEN"));
    assert!(authorize(t1, &[]).starts_with("ALLOW"));

    privint(&app, jwt, &["disable", id]);
    assert!(authorize(t1, &[]).contains("DENY DISABLED"));
    privint(&app, jwt, &["enable", id]);
    assert!(authorize(t1, &[]).starts_with("ALLOW"));

    privint(&app, jwt, &["expire", id]);
    assert!(authorize(t1, &[]).contains("DENY REVOKED_TOKEN"));
    let events = privint(&app, jwt, &["events", "--integration", id]);
    for kind in [
        "integration.created",
        "token.rotated",
        "token.rotation_cancelled",
        "integration.disabled",
        "integration.enabled",
        "token.expired",
    ] {
        assert!(events.contains(kind), "{events}");
    }
    assert!(privint(&app, jwt, &["list", "--agency", "agency1"]).contains(id));
    privint(&app, jwt, &["delete", id]);
    assert!(!privint(&app, jwt, &["list", "--agency", "agency1"]).contains(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_commands() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let jwt = privint(&app, None, &["dev-jwt", "--agency", "agency1"]);
    let jwt = Some(jwt.trim());
    let created = privint(
        &app,
        jwt,
        &[
            "create",
            "--agency",
            "agency1",
            "--name",
            "Reporting",
            "--scope",
            "companies.readonly",
        ],
    );
    let id = field(&created, "id");
    let updated = privint(
        &app,
        jwt,
        &[
            "update",
            id,
            "--name",
            "Reports",
            "--scope",
            "users.readonly",
            "--scope",
            "companies.readonly",
        ],
    );
    assert_eq!(field(&updated, "name"), "Reports");
    assert_eq!(
        field(&updated, "scopes"),
        "companies.readonly users.readonly"
    );
    let scheduled = privint(&app, jwt, &["schedule-expiry", id, "--in", "30d"]);
    assert!(
        !field(&scheduled, "current token").ends_with("expires -)"),
        "{scheduled}"
    );
    let cleared = privint(&app, jwt, &["schedule-expiry", id, "--clear"]);
    assert!(
        field(&cleared, "current token").ends_with("expires -)"),
        "{cleared}"
    );
    privint(&app, jwt, &["rotate", id]);
    let expired = privint(&app, jwt, &["expire", id, "--previous"]);
    assert_eq!(field(&expired, "previous token"), "-");
    let rotated = privint(&app, jwt, &["rotate", id, "--now"]);
    let token = field(&rotated, "token:");
    let allowed = privint(
        &app,
        None,
        &[
            "authorize",
            "--token",
            token,
            "--agency",
            "agency1",
            "--scope",
            "users.readonly",
        ],
    );
    assert!(allowed.starts_with("ALLOW"), "{allowed}");
    assert!(privint(&app, jwt, &["get", id]).contains("Reports"));
}

#[test]
fn migrate_runs_alone_and_serve_refuses_to_start_without_keys() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("privint.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_privint"))
        .arg("migrate")
        .env("APP__DATABASE_URL", &database_url)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    assert!(dir.path().join("privint.db").exists());

    let output = Command::new(env!("CARGO_BIN_EXE_privint"))
        .arg("serve")
        .env("APP__DATABASE_URL", &database_url)
        .env("APP__LISTEN_ADDR", "127.0.0.1:0")
        .env_remove("APP__AUTH__HS256_SECRET")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("auth.jwks_file or auth.hs256_secret"),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_for_scripts() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let jwt = privint(&app, None, &["dev-jwt", "--agency", "agency1"]);
    let jwt = Some(jwt.trim());
    let args = [
        "create",
        "--agency",
        "agency1",
        "--name",
        "Sync",
        "--scope",
        "users.readonly",
        "--json",
    ];
    let created: serde_json::Value =
        serde_json::from_str(&privint(&app, jwt, &args)).expect("JSON");
    assert_eq!(created["name"], "Sync");
    assert_eq!(created["scopes"], serde_json::json!(["users.readonly"]));
    let token = json_str(&created, "token");
    let decide = |scope: &str| -> serde_json::Value {
        let args = [
            "authorize",
            "--token",
            token,
            "--agency",
            "agency1",
            "--scope",
            scope,
            "--json",
        ];
        serde_json::from_str(&privint(&app, None, &args)).expect("JSON")
    };
    let allowed = decide("users.readonly");
    assert_eq!(allowed["decision"], "ALLOW");
    assert_eq!(allowed["integration_id"], created["id"]);
    let denied = decide("contacts.write");
    assert_eq!(denied["decision"], "DENY");
    assert_eq!(denied["reason"], "MISSING_SCOPES");
    assert_eq!(
        denied["missing_scopes"],
        serde_json::json!(["contacts.write"])
    );
    let listed = privint(&app, jwt, &["list", "--agency", "agency1", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["integrations"][0]["id"], created["id"]);
}

// Regression: `privint scopes | head -3` panicked with "failed printing to stdout: Broken pipe".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_a_normal_end() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let jwt = privint(&app, None, &["dev-jwt", "--agency", "agency1"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_privint"))
        .args(["scopes"])
        .env("PRIVINT_ADDR", format!("http://{}", app.addr))
        .env("PRIVINT_JWT", jwt.trim())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run privint");
    // The reader goes away before the catalog is written, as `head` does after its lines.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("privint ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(
        !stderr.contains("panicked") && stderr.is_empty(),
        "{stderr}"
    );
}

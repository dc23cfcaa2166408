//! What the client commands print: the text the README shows, or with `--json` one JSON object
//! per result (so scripts can take the id and the token without copying them by hand).
//!
//! Every write returns its error: a closed pipe ends the command quietly (see `main.rs`).

use std::io::Write;

use serde_json::{Value, json};

use crate::grpc::pb;

/// Prints one line of text.
///
/// # Errors
/// Returns the write error (a closed pipe included).
pub fn line(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

/// Prints results as text or JSON.
pub struct Output {
    json: bool,
}

impl Output {
    /// Returns a printer of text, or of JSON with `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn text(&self, text: &str) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    fn json(&self, value: &Value) -> anyhow::Result<()> {
        line(&value.to_string())
    }

    /// Prints an integration.
    pub fn integration(&self, integration: &pb::Integration) -> anyhow::Result<()> {
        if self.json {
            return self.json(&integration_json(integration));
        }
        self.text(&integration_text(integration))
    }

    /// Prints an integration with the token just issued for it (shown only this once).
    pub fn issued(&self, integration: &pb::Integration, token: &str) -> anyhow::Result<()> {
        if self.json {
            let mut value = integration_json(integration);
            value["token"] = json!(token);
            return self.json(&value);
        }
        self.text(&format!(
            "{}token: {token}\n(shown only this once: store it now)\n",
            integration_text(integration)
        ))
    }

    /// Prints the integration an earlier create with the same request id made.
    pub fn replayed(&self, integration: &pb::Integration) -> anyhow::Result<()> {
        if self.json {
            let mut value = integration_json(integration);
            value["replayed"] = json!(true);
            return self.json(&value);
        }
        self.text(&format!(
            "{}(created earlier with this request id: its token was shown then)\n",
            integration_text(integration)
        ))
    }

    /// Prints a page of integrations.
    pub fn integrations(&self, page: &pb::ListIntegrationsResponse) -> anyhow::Result<()> {
        if self.json {
            let integrations: Vec<Value> = page.integrations.iter().map(integration_json).collect();
            return self.json(&json!({
                "integrations": integrations,
                "next_page_token": page.next_page_token,
            }));
        }
        for integration in &page.integrations {
            self.text(&format!("{}\n", integration_text(integration)))?;
        }
        if !page.next_page_token.is_empty() {
            self.text(&format!(
                "next page: --page-token {}\n",
                page.next_page_token
            ))?;
        }
        Ok(())
    }

    /// Prints that an integration was deleted.
    pub fn deleted(&self, id: &str) -> anyhow::Result<()> {
        if self.json {
            return self.json(&json!({ "deleted": id }));
        }
        line(&format!("deleted {id}"))
    }

    /// Prints the scope catalog, a scope a line.
    pub fn scopes(&self, scopes: &[pb::Scope]) -> anyhow::Result<()> {
        for scope in scopes {
            let levels: Vec<&str> = scope.levels().map(level_name).collect();
            if self.json {
                self.json(&json!({
                    "name": scope.name,
                    "levels": levels,
                    "description": scope.description,
                    "endpoints": scope.endpoints,
                }))?;
            } else {
                line(&format!(
                    "{:<34} {:<16} {}",
                    scope.name,
                    levels.join(","),
                    scope.description
                ))?;
            }
        }
        Ok(())
    }

    /// Prints an Authorize decision: `ALLOW ...` or `DENY <REASON>`.
    pub fn decision(&self, response: &pb::AuthorizeResponse) -> anyhow::Result<()> {
        let allowed = response.decision() == pb::Decision::Allow;
        let principal = response.principal.clone().unwrap_or_default();
        if self.json {
            let mut value = json!({ "decision": if allowed { "ALLOW" } else { "DENY" } });
            if allowed {
                value["integration_id"] = json!(principal.integration_id);
                value["token_id"] = json!(principal.token_id);
                value["scopes"] = json!(principal.scopes);
                value["expire_time"] = json!(time(response.expire_time.as_ref()));
                value["previous_token"] = json!(response.previous_token);
            } else {
                value["reason"] = json!(deny_reason(response.reason()));
                value["missing_scopes"] = json!(response.missing_scopes);
            }
            return self.json(&value);
        }
        if !allowed {
            line(&format!("DENY {}", deny_reason(response.reason())))?;
            if !response.missing_scopes.is_empty() {
                line(&format!(
                    "missing scopes: {}",
                    response.missing_scopes.join(" ")
                ))?;
            }
            return Ok(());
        }
        line(&format!(
            "ALLOW integration {} token {} (expires {})",
            principal.integration_id,
            principal.token_id,
            time(response.expire_time.as_ref())
        ))?;
        if response.previous_token {
            line(
                "warning: this is the previous token of a rotation window; switch to the new token",
            )?;
        }
        Ok(())
    }

    /// Prints an audit event.
    pub fn event(&self, event: &pb::Event) -> anyhow::Result<()> {
        if self.json {
            return self.json(&json!({
                "id": event.id,
                "time": time(event.time.as_ref()),
                "type": event.r#type,
                "integration_id": event.integration_id,
                "agency_id": event.agency_id,
                "location_id": event.location_id,
                "actor": event.actor,
                "details": event.details,
            }));
        }
        let mut details: Vec<_> = event
            .details
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        details.sort();
        line(&format!(
            "{} {} {:<26} {} by {} {}",
            event.id,
            time(event.time.as_ref()),
            event.r#type,
            event.integration_id,
            event.actor,
            details.join(" ")
        ))
    }
}

/// Returns a deny reason as the README shows it: `MISSING_SCOPES`, not `DENY_REASON_MISSING_SCOPES`.
fn deny_reason(reason: pb::DenyReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix("DENY_REASON_").unwrap_or(name)
}

/// Returns a level as the README shows it: `agency` or `location`.
fn level_name(level: pb::Level) -> &'static str {
    match level {
        pb::Level::Agency => "agency",
        pb::Level::Location => "location",
        pb::Level::Unspecified => "unspecified",
    }
}

fn time(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|it| chrono::DateTime::from_timestamp(it.seconds, it.nanos as u32))
        .map_or_else(|| "-".to_owned(), |it| it.to_rfc3339())
}

fn token_text(label: &str, token: Option<&pb::TokenInfo>) -> String {
    let Some(token) = token else {
        return format!("{label:<15} -\n");
    };
    let mut text = format!(
        "{label:<15} {} (id {}, created {}, expires {})\n",
        token.hint,
        token.id,
        time(token.create_time.as_ref()),
        time(token.expire_time.as_ref())
    );
    if !token.last_client_ip.is_empty() || !token.last_user_agent.is_empty() {
        text += &format!(
            "{:<15} {} {}\n",
            "  last caller", token.last_client_ip, token.last_user_agent
        );
    }
    text
}

fn integration_text(integration: &pb::Integration) -> String {
    let owner = if integration.location_id.is_empty() {
        integration.agency_id.clone()
    } else {
        format!("{} / {}", integration.agency_id, integration.location_id)
    };
    let mut text = format!(
        "{:<15} {}\n{:<15} {}\n{:<15} {owner}\n{:<15} {}\n{:<15} {}\n",
        "id",
        integration.id,
        "name",
        integration.name,
        "owner",
        "scopes",
        integration.scopes.join(" "),
        "etag",
        integration.etag
    );
    text += &token_text("current token", integration.current_token.as_ref());
    text += &token_text("previous token", integration.previous_token.as_ref());
    if integration.rotation_due {
        text += &format!("{:<15} yes\n", "rotation due");
    }
    if integration.disable_time.is_some() {
        text += &format!("{:<15} yes: every token is refused DISABLED\n", "disabled");
    }
    text
}

fn token_json(token: Option<&pb::TokenInfo>) -> Value {
    token.map_or(Value::Null, |token| {
        json!({
            "id": token.id,
            "hint": token.hint,
            "create_time": time(token.create_time.as_ref()),
            "expire_time": token.expire_time.as_ref().map(|it| time(Some(it))),
            "last_used_time": token.last_used_time.as_ref().map(|it| time(Some(it))),
        })
    })
}

fn integration_json(integration: &pb::Integration) -> Value {
    json!({
        "id": integration.id,
        "name": integration.name,
        "description": integration.description,
        "agency_id": integration.agency_id,
        "location_id": integration.location_id,
        "scopes": integration.scopes,
        "etag": integration.etag,
        "current_token": token_json(integration.current_token.as_ref()),
        "previous_token": token_json(integration.previous_token.as_ref()),
        "rotation_due": integration.rotation_due,
        "unused_scopes": integration.unused_scopes,
        "disabled": integration.disable_time.is_some(),
    })
}

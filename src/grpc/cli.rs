//! The command line: `privint serve` (the default) runs the server; the other subcommands are
//! a client of a running server, so everything can be tried without other tools.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;

use crate::grpc::auth::Claims;
use crate::grpc::pb;

/// Issues private integration tokens and answers Authorize for every API request.
#[derive(Parser)]
#[command(name = "privint", version, about)]
pub struct Cli {
    /// A TOML configuration file (see README "Configuration").
    #[arg(long, global = true, env = "PRIVINT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How the client subcommands reach the server.
#[derive(Args)]
pub struct ClientArgs {
    /// The server's address.
    #[arg(
        long,
        global = true,
        env = "PRIVINT_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// A management JWT (see `privint dev-jwt`).
    #[arg(long, global = true, env = "PRIVINT_JWT", hide_env_values = true)]
    pub jwt: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs the server (the default).
    Serve {
        /// DEVELOPMENT ONLY: trust JWTs signed with the public development secret when no key is configured.
        #[arg(long)]
        dev: bool,
    },
    /// Runs the database migrations and exits.
    Migrate,
    /// DEVELOPMENT ONLY: prints a management JWT signed with the HS256 secret of a local server.
    DevJwt {
        #[arg(long)]
        agency: String,
        /// agency_admin, agency_user, location_admin or location_user.
        #[arg(long, default_value = "agency_admin")]
        role: String,
        /// A location the user may act in (repeatable).
        #[arg(long = "location")]
        locations: Vec<String>,
        /// A permission (repeatable); without any, the claim is absent and restricts nothing.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        #[arg(long, default_value = "dev-user")]
        user: String,
        /// How long the JWT is valid.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Creates an integration and prints its token (shown only this once).
    Create {
        #[arg(long)]
        agency: String,
        /// Makes it a location-level integration.
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A scope to grant (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Lists the integrations of an agency or of one location.
    List {
        #[arg(long)]
        agency: String,
        #[arg(long)]
        location: Option<String>,
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Shows one integration.
    Get { id: String },
    /// Changes name, description and/or scopes.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The new scope set (repeatable); replaces the old one.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        etag: String,
    },
    /// Issues a new token; the old one works for a grace period, or stops now with --now.
    Rotate {
        id: String,
        /// Expire every older token at once (a compromised token).
        #[arg(long, conflicts_with = "grace")]
        now: bool,
        /// How long the old token keeps working, e.g. 7d, 12h (default 7 days).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<std::time::Duration>,
    },
    /// Revokes the new token and makes the previous token current again.
    CancelRotation { id: String },
    /// Expires every live token now, or only the previous one with --previous.
    Expire {
        id: String,
        #[arg(long)]
        previous: bool,
    },
    /// Schedules (or clears) the expiry of the current token.
    ScheduleExpiry {
        id: String,
        /// How far ahead, e.g. 30d.
        #[arg(long = "in", value_parser = humantime::parse_duration, conflicts_with = "clear")]
        after: Option<std::time::Duration>,
        /// Clears a scheduled expiry.
        #[arg(long)]
        clear: bool,
    },
    /// Deletes an integration; every token stops working at once.
    Delete { id: String },
    /// Lists the scope catalog.
    Scopes {
        /// agency or location.
        #[arg(long)]
        level: Option<String>,
    },
    /// Asks whether a token may make a request.
    Authorize {
        /// The token, or `Bearer <token>`.
        #[arg(long, env = "PRIVINT_TOKEN", hide_env_values = true)]
        token: String,
        /// A required scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        agency: String,
        #[arg(long, default_value = "")]
        location: String,
    },
    /// Lists (or with --follow, streams) audit events.
    Events {
        #[arg(long, default_value = "")]
        integration: String,
        #[arg(long, default_value = "")]
        agency: String,
        #[arg(long, default_value = "")]
        location: String,
        /// Keep streaming new events.
        #[arg(long)]
        follow: bool,
    },
}

/// Prints a development JWT signed with `secret`.
///
/// # Errors
/// Returns an error if signing fails.
pub fn dev_jwt(
    command: &Command,
    secret: &str,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<String> {
    let Command::DevJwt {
        agency,
        role,
        locations,
        permissions,
        user,
        ttl,
    } = command
    else {
        anyhow::bail!("not a dev-jwt command");
    };
    let claims = Claims {
        sub: user.clone(),
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        exp: (Utc::now().timestamp() as u64) + ttl.as_secs(),
        nbf: None,
        agency_id: Some(agency.clone()),
        role: Some(role.clone()),
        location_ids: locations.clone(),
        permissions: (!permissions.is_empty()).then(|| permissions.clone()),
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &key,
    )?)
}

/// Runs one client subcommand against the server at `client.addr`.
///
/// # Errors
/// Returns the server's error, or an error if it cannot be reached.
pub async fn run_client(client: ClientArgs, command: Command) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(client.addr.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", client.addr))?;
    if let Command::Authorize {
        token,
        scopes,
        agency,
        location,
    } = command
    {
        let mut authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
        let request = pb::AuthorizeRequest {
            token,
            required_scopes: scopes,
            agency_id: agency,
            location_id: location,
        };
        let response = authorizer.authorize(request).await?.into_inner();
        print_decision(&response);
        return Ok(());
    }
    let jwt = client.jwt.context(
        "management commands need a JWT: pass --jwt or set PRIVINT_JWT (see privint dev-jwt)",
    )?;
    let bearer: MetadataValue<_> = format!("Bearer {jwt}")
        .parse()
        .context("the JWT is not valid metadata")?;
    let mut api = pb::integration_service_client::IntegrationServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        },
    );
    run_management(&mut api, command).await
}

async fn run_management<T>(
    api: &mut pb::integration_service_client::IntegrationServiceClient<T>,
    command: Command,
) -> anyhow::Result<()>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    match command {
        Command::Create {
            agency,
            location,
            name,
            description,
            scopes,
        } => {
            let request = pb::CreateIntegrationRequest {
                agency_id: agency,
                location_id: location.unwrap_or_default(),
                name,
                description,
                scopes,
            };
            let response = api.create_integration(request).await?.into_inner();
            print_integration(&response.integration.unwrap_or_default());
            println!(
                "token: {}\n(shown only this once: store it now)",
                response.token
            );
        }
        Command::List {
            agency,
            location,
            page_size,
            page_token,
        } => {
            let request = pb::ListIntegrationsRequest {
                agency_id: agency,
                location_id: location.unwrap_or_default(),
                page_size,
                page_token,
            };
            let response = api.list_integrations(request).await?.into_inner();
            for integration in &response.integrations {
                print_integration(integration);
                println!();
            }
            if !response.next_page_token.is_empty() {
                println!("next page: --page-token {}", response.next_page_token);
            }
        }
        Command::Get { id } => print_integration(
            &api.get_integration(pb::GetIntegrationRequest { id })
                .await?
                .into_inner(),
        ),
        Command::Update {
            id,
            name,
            description,
            scopes,
            etag,
        } => {
            let mut paths = Vec::new();
            let mut integration = pb::Integration {
                id,
                etag,
                ..Default::default()
            };
            if let Some(name) = name {
                integration.name = name;
                paths.push("name".to_owned());
            }
            if let Some(description) = description {
                integration.description = description;
                paths.push("description".to_owned());
            }
            if !scopes.is_empty() {
                integration.scopes = scopes;
                paths.push("scopes".to_owned());
            }
            let request = pb::UpdateIntegrationRequest {
                integration: Some(integration),
                update_mask: Some(prost_types::FieldMask { paths }),
            };
            print_integration(&api.update_integration(request).await?.into_inner());
        }
        Command::Rotate { id, now, grace } => {
            let grace_period = grace.map(|grace| prost_types::Duration {
                seconds: grace.as_secs() as i64,
                nanos: grace.subsec_nanos() as i32,
            });
            let request = pb::RotateTokenRequest {
                id,
                expire_old_now: now,
                grace_period,
                etag: String::new(),
            };
            let response = api.rotate_token(request).await?.into_inner();
            print_integration(&response.integration.unwrap_or_default());
            println!(
                "token: {}\n(shown only this once: store it now)",
                response.token
            );
        }
        Command::CancelRotation { id } => {
            print_integration(
                &api.cancel_rotation(pb::CancelRotationRequest {
                    id,
                    etag: String::new(),
                })
                .await?
                .into_inner(),
            );
        }
        Command::Expire { id, previous } => {
            let target = if previous {
                pb::ExpireTarget::Previous
            } else {
                pb::ExpireTarget::All
            };
            let request = pb::ExpireTokenRequest {
                id,
                target: target.into(),
                etag: String::new(),
            };
            print_integration(&api.expire_token(request).await?.into_inner());
        }
        Command::ScheduleExpiry { id, after, clear } => {
            let expire_time = match (after, clear) {
                (Some(after), false) => Some(crate::grpc::convert::timestamp(
                    Utc::now() + chrono::Duration::from_std(after)?,
                )),
                (None, true) => None,
                _ => anyhow::bail!("pass --in <duration> or --clear"),
            };
            let request = pb::ScheduleTokenExpiryRequest {
                id,
                expire_time,
                etag: String::new(),
            };
            print_integration(&api.schedule_token_expiry(request).await?.into_inner());
        }
        Command::Delete { id } => {
            api.delete_integration(pb::DeleteIntegrationRequest {
                id: id.clone(),
                etag: String::new(),
            })
            .await?;
            println!("deleted {id}");
        }
        Command::Scopes { level } => {
            let level = match level.as_deref() {
                None => pb::Level::Unspecified,
                Some("agency") => pb::Level::Agency,
                Some("location") => pb::Level::Location,
                Some(other) => anyhow::bail!("unknown level {other:?}: use agency or location"),
            };
            let response = api
                .list_scopes(pb::ListScopesRequest {
                    level: level.into(),
                })
                .await?
                .into_inner();
            for scope in response.scopes {
                let levels: Vec<&str> = scope.levels().map(|level| level.as_str_name()).collect();
                println!(
                    "{:<34} {:<40} {}",
                    scope.name,
                    levels.join(","),
                    scope.description
                );
            }
        }
        Command::Events {
            integration,
            agency,
            location,
            follow,
        } => {
            if follow {
                let request = pb::WatchEventsRequest {
                    integration_id: integration,
                    agency_id: agency,
                    location_id: location,
                    after_id: String::new(),
                };
                let mut stream = api.watch_events(request).await?.into_inner();
                while let Some(event) = stream.message().await? {
                    print_event(&event);
                }
            } else {
                let request = pb::ListEventsRequest {
                    integration_id: integration,
                    agency_id: agency,
                    location_id: location,
                    page_size: 100,
                    page_token: String::new(),
                };
                for event in api.list_events(request).await?.into_inner().events {
                    print_event(&event);
                }
            }
        }
        Command::Serve { .. }
        | Command::Migrate
        | Command::DevJwt { .. }
        | Command::Authorize { .. } => {
            anyhow::bail!("not a management command")
        }
    }
    Ok(())
}

fn time(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|it| chrono::DateTime::from_timestamp(it.seconds, it.nanos as u32))
        .map_or_else(|| "-".to_owned(), |it| it.to_rfc3339())
}

fn print_token(label: &str, token: Option<&pb::TokenInfo>) {
    match token {
        Some(token) => println!(
            "{label:<15} {} (id {}, created {}, expires {})",
            token.hint,
            token.id,
            time(token.create_time.as_ref()),
            time(token.expire_time.as_ref())
        ),
        None => println!("{label:<15} -"),
    }
}

fn print_integration(integration: &pb::Integration) {
    println!("{:<15} {}", "id", integration.id);
    println!("{:<15} {}", "name", integration.name);
    println!(
        "{:<15} {}{}",
        "owner",
        integration.agency_id,
        if integration.location_id.is_empty() {
            String::new()
        } else {
            format!(" / {}", integration.location_id)
        }
    );
    println!("{:<15} {}", "scopes", integration.scopes.join(" "));
    println!("{:<15} {}", "etag", integration.etag);
    print_token("current token", integration.current_token.as_ref());
    print_token("previous token", integration.previous_token.as_ref());
    if integration.rotation_due {
        println!("{:<15} yes", "rotation due");
    }
}

fn print_decision(response: &pb::AuthorizeResponse) {
    match response.decision() {
        pb::Decision::Allow => {
            let principal = response.principal.clone().unwrap_or_default();
            println!(
                "ALLOW integration {} token {} (expires {})",
                principal.integration_id,
                principal.token_id,
                time(response.expire_time.as_ref())
            );
            if response.previous_token {
                println!(
                    "warning: this is the previous token of a rotation window; switch to the new token"
                );
            }
        }
        _ => {
            println!("DENY {}", response.reason().as_str_name());
            if !response.missing_scopes.is_empty() {
                println!("missing scopes: {}", response.missing_scopes.join(" "));
            }
        }
    }
}

fn print_event(event: &pb::Event) {
    let mut details: Vec<_> = event
        .details
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    details.sort();
    println!(
        "{} {} {:<26} {} by {} {}",
        event.id,
        time(event.time.as_ref()),
        event.r#type,
        event.integration_id,
        event.actor,
        details.join(" ")
    );
}

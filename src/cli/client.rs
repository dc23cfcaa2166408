//! The client subcommands: one function per command, each one call to a running server.
//! Size: one short function per command of the management API.

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::cli::BearerJwt;
use crate::cli::output::Output;
use crate::grpc::pb;

/// How the client subcommands reach the server, and how they print.
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
    /// Print one JSON object per result instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The management commands: each calls `IntegrationService` with a JWT.
#[derive(Subcommand)]
pub enum ManagementCommand {
    /// Creates an integration and prints its token (shown only this once).
    Create(CreateArgs),
    /// Lists the integrations of an agency or of one location.
    List(ListArgs),
    /// Shows one integration.
    Get(IdArgs),
    /// Changes name, description and/or scopes.
    Update(UpdateArgs),
    /// Issues a new token; the old one works for a grace period, or stops now with --now.
    Rotate(RotateArgs),
    /// Revokes the new token and makes the previous token current again.
    CancelRotation(IdArgs),
    /// Expires every live token now, or only the previous one with --previous.
    Expire(ExpireArgs),
    /// Schedules (or clears) the expiry of the current token.
    ScheduleExpiry(ScheduleExpiryArgs),
    /// Disables an integration: every token is refused DISABLED until it is enabled.
    Disable(IdArgs),
    /// Enables a disabled integration: its tokens work again as they were.
    Enable(IdArgs),
    /// Deletes an integration; every token stops working at once.
    Delete(IdArgs),
    /// Lists the scope catalog.
    Scopes(ScopesArgs),
    /// Lists (or with --follow, streams) audit events.
    Events(EventsArgs),
}

#[derive(Args)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub agency: String,
    /// Makes it a location-level integration.
    #[arg(long)]
    pub location: Option<String>,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// A scope to grant (repeatable).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// A CIDR range its tokens may be used from (repeatable); none: anywhere.
    #[arg(long = "allow-ip")]
    pub ip_allowlist: Vec<String>,
    /// An id for this request: running the command again with it within 24 hours returns the
    /// integration it created instead of another (without the token, shown the first time).
    #[arg(long, default_value = "")]
    pub request_id: String,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    pub agency: String,
    #[arg(long)]
    pub location: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Only integrations with a token expiring within this time, e.g. 14d.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expiring_within: Option<std::time::Duration>,
    /// Only integrations whose current token is due for rotation.
    #[arg(long)]
    pub rotation_due: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    pub id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// The new scope set (repeatable); replaces the old one.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The new IP allowlist (a CIDR range, repeatable); replaces the old one.
    #[arg(long = "allow-ip")]
    pub ip_allowlist: Vec<String>,
    /// Removes the IP allowlist: tokens work from anywhere.
    #[arg(long, conflicts_with = "ip_allowlist")]
    pub any_ip: bool,
    #[arg(long, default_value = "")]
    pub etag: String,
}

#[derive(Args)]
pub struct RotateArgs {
    pub id: String,
    /// Expire every older token at once (a compromised token).
    #[arg(long, conflicts_with = "grace")]
    pub now: bool,
    /// How long the old token keeps working, e.g. 7d, 12h (default 7 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub grace: Option<std::time::Duration>,
}

#[derive(Args)]
pub struct ExpireArgs {
    pub id: String,
    #[arg(long)]
    pub previous: bool,
}

#[derive(Args)]
pub struct ScheduleExpiryArgs {
    pub id: String,
    /// How far ahead, e.g. 30d.
    #[arg(long = "in", value_parser = humantime::parse_duration, required_unless_present = "clear")]
    pub after: Option<std::time::Duration>,
    /// Clears a scheduled expiry.
    #[arg(long, conflicts_with = "after")]
    pub clear: bool,
}

#[derive(Args)]
pub struct ScopesArgs {
    /// agency or location.
    #[arg(long, value_parser = ["agency", "location"])]
    pub level: Option<String>,
}

#[derive(Args)]
pub struct AuthorizeArgs {
    /// The token, or `Bearer <token>`.
    #[arg(long, env = "PRIVINT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A required scope (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    #[arg(long, default_value = "")]
    pub agency: String,
    #[arg(long, default_value = "")]
    pub location: String,
    /// The API caller's IP address, for integrations with an IP allowlist.
    #[arg(long, default_value = "")]
    pub client_ip: String,
    /// The API caller's user agent, shown as the token's last caller.
    #[arg(long, default_value = "")]
    pub user_agent: String,
}

#[derive(Args)]
pub struct EventsArgs {
    #[arg(long, default_value = "")]
    pub integration: String,
    #[arg(long, default_value = "")]
    pub agency: String,
    #[arg(long, default_value = "")]
    pub location: String,
    /// Keep streaming new events.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: replay every event from the first one, then follow.
    #[arg(long, requires = "follow")]
    pub from_start: bool,
}

type Api = pb::integration_service_client::IntegrationServiceClient<
    InterceptedService<Channel, BearerJwt>,
>;

async fn connect(client: &ClientArgs) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(client.addr.clone())?;
    let channel = endpoint.connect().await;
    channel.with_context(|| format!("cannot reach {}", client.addr))
}

/// Asks the server at `client.addr` whether a token may make a request.
///
/// # Errors
/// Returns the server's error, or an error if it cannot be reached.
pub async fn authorize(client: ClientArgs, args: AuthorizeArgs) -> anyhow::Result<()> {
    let channel = connect(&client).await?;
    let mut authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
    let request = pb::AuthorizeRequest {
        token: args.token,
        required_scopes: args.scopes,
        agency_id: args.agency,
        location_id: args.location,
        client_ip: args.client_ip,
        user_agent: args.user_agent,
    };
    let response = authorizer.authorize(request).await?.into_inner();
    Output::new(client.json).decision(&response)
}

/// Runs one management command against the server at `client.addr`.
///
/// # Errors
/// Returns the server's error, or an error if it cannot be reached.
pub async fn manage(client: ClientArgs, command: ManagementCommand) -> anyhow::Result<()> {
    let channel = connect(&client).await?;
    let out = Output::new(client.json);
    let jwt = client.jwt.context(
        "management commands need a JWT: pass --jwt or set PRIVINT_JWT (see privint dev-jwt)",
    )?;
    let mut api = pb::integration_service_client::IntegrationServiceClient::with_interceptor(
        channel,
        BearerJwt::new(&jwt)?,
    );
    match command {
        ManagementCommand::Create(args) => create(&mut api, &out, args).await,
        ManagementCommand::List(args) => list(&mut api, &out, args).await,
        ManagementCommand::Get(IdArgs { id }) => {
            let request = pb::GetIntegrationRequest { id };
            out.integration(&api.get_integration(request).await?.into_inner())
        }
        ManagementCommand::Update(args) => update(&mut api, &out, args).await,
        ManagementCommand::Rotate(args) => rotate(&mut api, &out, args).await,
        ManagementCommand::CancelRotation(IdArgs { id }) => {
            let etag = String::new();
            let request = pb::CancelRotationRequest { id, etag };
            out.integration(&api.cancel_rotation(request).await?.into_inner())
        }
        ManagementCommand::Disable(IdArgs { id }) => {
            let request = pb::DisableIntegrationRequest {
                id,
                etag: String::new(),
            };
            out.integration(&api.disable_integration(request).await?.into_inner())
        }
        ManagementCommand::Enable(IdArgs { id }) => {
            let request = pb::EnableIntegrationRequest {
                id,
                etag: String::new(),
            };
            out.integration(&api.enable_integration(request).await?.into_inner())
        }
        ManagementCommand::Expire(args) => expire(&mut api, &out, args).await,
        ManagementCommand::ScheduleExpiry(args) => schedule_expiry(&mut api, &out, args).await,
        ManagementCommand::Delete(IdArgs { id }) => {
            let request = pb::DeleteIntegrationRequest {
                id: id.clone(),
                etag: String::new(),
            };
            api.delete_integration(request).await?;
            out.deleted(&id)
        }
        ManagementCommand::Scopes(args) => scopes(&mut api, &out, args).await,
        ManagementCommand::Events(args) => events(&mut api, &out, args).await,
    }
}

async fn create(api: &mut Api, out: &Output, args: CreateArgs) -> anyhow::Result<()> {
    let request = pb::CreateIntegrationRequest {
        agency_id: args.agency,
        location_id: args.location.unwrap_or_default(),
        name: args.name,
        description: args.description,
        scopes: args.scopes,
        ip_allowlist: args.ip_allowlist,
        request_id: args.request_id,
    };
    let response = api.create_integration(request).await?.into_inner();
    let integration = response.integration.unwrap_or_default();
    if response.replayed {
        return out.replayed(&integration);
    }
    out.issued(&integration, &response.token)
}

async fn list(api: &mut Api, out: &Output, args: ListArgs) -> anyhow::Result<()> {
    let expiring_before = match args.expiring_within {
        Some(within) => Some(crate::grpc::convert::timestamp(
            Utc::now()
                + chrono::Duration::from_std(within).context("--expiring-within is too long")?,
        )),
        None => None,
    };
    let request = pb::ListIntegrationsRequest {
        agency_id: args.agency,
        location_id: args.location.unwrap_or_default(),
        page_size: args.page_size,
        page_token: args.page_token,
        expiring_before,
        rotation_due: args.rotation_due,
    };
    out.integrations(&api.list_integrations(request).await?.into_inner())
}

async fn update(api: &mut Api, out: &Output, args: UpdateArgs) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    let mut integration = pb::Integration {
        id: args.id,
        etag: args.etag,
        ..Default::default()
    };
    if let Some(name) = args.name {
        integration.name = name;
        paths.push("name".to_owned());
    }
    if let Some(description) = args.description {
        integration.description = description;
        paths.push("description".to_owned());
    }
    if !args.scopes.is_empty() {
        integration.scopes = args.scopes;
        paths.push("scopes".to_owned());
    }
    if !args.ip_allowlist.is_empty() || args.any_ip {
        integration.ip_allowlist = args.ip_allowlist;
        paths.push("ip_allowlist".to_owned());
    }
    let request = pb::UpdateIntegrationRequest {
        integration: Some(integration),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    out.integration(&api.update_integration(request).await?.into_inner())
}

async fn rotate(api: &mut Api, out: &Output, args: RotateArgs) -> anyhow::Result<()> {
    let grace_period = args
        .grace
        .map(prost_types::Duration::try_from)
        .transpose()
        .context("--grace is too long")?;
    let request = pb::RotateTokenRequest {
        id: args.id,
        expire_old_now: args.now,
        grace_period,
        etag: String::new(),
    };
    let response = api.rotate_token(request).await?.into_inner();
    out.issued(&response.integration.unwrap_or_default(), &response.token)
}

async fn expire(api: &mut Api, out: &Output, args: ExpireArgs) -> anyhow::Result<()> {
    let target = if args.previous {
        pb::ExpireTarget::Previous
    } else {
        pb::ExpireTarget::All
    };
    let request = pb::ExpireTokenRequest {
        id: args.id,
        target: target.into(),
        etag: String::new(),
    };
    out.integration(&api.expire_token(request).await?.into_inner())
}

async fn schedule_expiry(
    api: &mut Api,
    out: &Output,
    args: ScheduleExpiryArgs,
) -> anyhow::Result<()> {
    let expire_time = match args.after {
        Some(after) => Some(crate::grpc::convert::timestamp(
            Utc::now() + chrono::Duration::from_std(after).context("--in is too long")?,
        )),
        None => None,
    };
    let request = pb::ScheduleTokenExpiryRequest {
        id: args.id,
        expire_time,
        etag: String::new(),
    };
    out.integration(&api.schedule_token_expiry(request).await?.into_inner())
}

async fn scopes(api: &mut Api, out: &Output, args: ScopesArgs) -> anyhow::Result<()> {
    let level = match args.level.as_deref() {
        Some("agency") => pb::Level::Agency,
        Some("location") => pb::Level::Location,
        _ => pb::Level::Unspecified,
    };
    let request = pb::ListScopesRequest {
        level: level.into(),
    };
    out.scopes(&api.list_scopes(request).await?.into_inner().scopes)
}

async fn events(api: &mut Api, out: &Output, args: EventsArgs) -> anyhow::Result<()> {
    if args.follow {
        let request = pb::WatchEventsRequest {
            integration_id: args.integration,
            agency_id: args.agency,
            location_id: args.location,
            after_id: String::new(),
            from_start: args.from_start,
        };
        let mut stream = api.watch_events(request).await?.into_inner();
        while let Some(event) = stream.message().await? {
            out.event(&event)?;
        }
        return Ok(());
    }
    let request = pb::ListEventsRequest {
        integration_id: args.integration,
        agency_id: args.agency,
        location_id: args.location,
        page_size: 100,
        page_token: String::new(),
    };
    for event in api.list_events(request).await?.into_inner().events {
        out.event(&event)?;
    }
    Ok(())
}

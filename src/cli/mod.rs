//! The command line: `privint serve` (the default) runs the server, `migrate` migrates the
//! database, `dev-jwt` mints a development JWT, and the other subcommands are a client of a
//! running server, so everything can be tried without other tools.
//!
//! Each command is its own type, so a wrong dispatch does not compile; client commands live in
//! `client`, their output (text or `--json`) in `output`.

mod client;
mod output;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use tonic::metadata::MetadataValue;

pub use client::{AuthorizeArgs, ClientArgs, ManagementCommand};

use crate::app::App;
use crate::clock::SystemClock;
use crate::config::{Config, DEV_SECRET, Settings};
use crate::grpc::auth::Claims;

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

/// What `privint` is asked to do.
#[derive(Subcommand)]
pub enum Command {
    /// Runs the server (the default).
    Serve(ServeArgs),
    /// Runs the database migrations and exits.
    Migrate,
    /// DEVELOPMENT ONLY: prints a management JWT signed with the HS256 secret of a local server.
    DevJwt(DevJwtArgs),
    /// Asks a running server whether a token may make a request.
    Authorize(AuthorizeArgs),
    #[command(flatten)]
    Manage(ManagementCommand),
}

/// `privint serve`.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// DEVELOPMENT ONLY: trust JWTs signed with the public development secret when no key is configured.
    #[arg(long)]
    pub dev: bool,
}

/// `privint dev-jwt`.
#[derive(Args)]
pub struct DevJwtArgs {
    #[arg(long)]
    pub agency: String,
    /// agency_admin, agency_user, location_admin or location_user.
    #[arg(long, default_value = "agency_admin")]
    pub role: String,
    /// A location the user may act in (repeatable).
    #[arg(long = "location")]
    pub locations: Vec<String>,
    /// A permission (repeatable); without any, the claim is absent and restricts nothing.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    #[arg(long, default_value = "dev-user")]
    pub user: String,
    /// How long the JWT is valid.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
}

/// Runs what the command line asks for.
///
/// # Errors
/// Returns what failed: configuration, start-up, the server, or a client call.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = || Settings::load(cli.config.as_deref()).map_err(anyhow::Error::msg);
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(settings()?, &args).await,
        Command::Migrate => migrate(settings()?).await,
        Command::DevJwt(args) => {
            let settings = settings()?;
            let jwt = dev_jwt(&args, &settings)?;
            output::line(&jwt)
        }
        Command::Authorize(args) => client::authorize(cli.client, args).await,
        Command::Manage(command) => client::manage(cli.client, command).await,
    }
}

async fn serve(mut settings: Settings, args: &ServeArgs) -> anyhow::Result<()> {
    let no_key = settings.auth.hs256_secret.is_none() && settings.auth.jwks_file.is_none();
    if args.dev && no_key {
        settings.auth.hs256_secret = Some(DEV_SECRET.to_owned().into());
    }
    let config = Config::try_from(settings).map_err(anyhow::Error::msg)?;
    let telemetry = crate::telemetry::init(&config.log_filter).map_err(anyhow::Error::msg)?;
    if args.dev {
        tracing::warn!(
            "development mode: management JWTs signed with the public development secret are trusted"
        );
    }
    let served = match App::bind(config, Arc::new(SystemClock)).await {
        Ok(app) => app.run(crate::app::shutdown_signal()).await,
        Err(err) => Err(err),
    };
    telemetry.shutdown();
    served
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let config = Config::try_from(settings).map_err(anyhow::Error::msg)?;
    let telemetry = crate::telemetry::init(&config.log_filter).map_err(anyhow::Error::msg)?;
    let migrated = async {
        let url = secrecy::ExposeSecret::expose_secret(&config.database_url);
        let store = crate::store::Store::connect(url, &config.database).await?;
        store.migrate().await
    };
    let migrated = migrated.await.context("migration failed");
    telemetry.shutdown();
    migrated?;
    output::line("migrations applied")
}

/// Returns a development JWT signed with the configured HS256 secret, or the public
/// development secret when none is configured.
///
/// # Errors
/// Returns an error if signing fails.
pub fn dev_jwt(args: &DevJwtArgs, settings: &Settings) -> anyhow::Result<String> {
    let secret = match &settings.auth.hs256_secret {
        Some(secret) => secrecy::ExposeSecret::expose_secret(secret).to_owned(),
        None => DEV_SECRET.to_owned(),
    };
    let claims = Claims {
        sub: args.user.clone(),
        iss: settings.auth.issuer.clone(),
        aud: settings.auth.audience.as_str().into(),
        exp: (Utc::now().timestamp() as u64) + args.ttl.as_secs(),
        nbf: None,
        agency_id: Some(args.agency.clone()),
        role: Some(args.role.clone()),
        location_ids: args.locations.clone(),
        permissions: (!args.permissions.is_empty()).then(|| args.permissions.clone()),
    };
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &key,
    )?)
}

/// Returns true if `err` is a write to a closed pipe (`privint scopes | head -3`): for a
/// command-line tool, a normal end.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Adds the management JWT to every call.
#[derive(Clone)]
pub struct BearerJwt(MetadataValue<tonic::metadata::Ascii>);

impl BearerJwt {
    /// Returns the interceptor that sends `jwt` as a bearer token.
    ///
    /// # Errors
    /// Returns an error if the JWT cannot be sent as metadata.
    pub fn new(jwt: &str) -> anyhow::Result<Self> {
        let bearer = format!("Bearer {jwt}")
            .parse()
            .context("the JWT is not valid metadata")?;
        Ok(Self(bearer))
    }
}

impl tonic::service::Interceptor for BearerJwt {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

//! The `privint` binary: parse the command line and configuration, then serve or act as a client.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use privint::app::App;
use privint::config::{Config, DEV_SECRET, Settings};
use privint::grpc::cli::{Cli, Command};
use privint::service::clock::SystemClock;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve { dev: false });
    let settings = || Settings::load(cli.config.as_deref()).map_err(anyhow::Error::msg);
    match command {
        Command::Serve { dev } => {
            let mut settings = settings()?;
            if dev && settings.auth.hs256_secret.is_none() && settings.auth.jwks_file.is_none() {
                settings.auth.hs256_secret = Some(DEV_SECRET.to_owned());
            }
            let config = Config::try_from(settings).map_err(anyhow::Error::msg)?;
            let telemetry =
                privint::telemetry::init(&config.log_filter).map_err(anyhow::Error::msg)?;
            if dev {
                tracing::warn!(
                    "development mode: management JWTs signed with the public development secret are trusted"
                );
            }
            let served = match App::bind(config, Arc::new(SystemClock)).await {
                Ok(app) => app.run(privint::app::shutdown_signal()).await,
                Err(err) => Err(err),
            };
            telemetry.shutdown();
            served
        }
        Command::Migrate => {
            let config = Config::try_from(settings()?).map_err(anyhow::Error::msg)?;
            let telemetry =
                privint::telemetry::init(&config.log_filter).map_err(anyhow::Error::msg)?;
            let store = privint::store::Store::connect(secrecy::ExposeSecret::expose_secret(
                &config.database_url,
            ))
            .await?;
            let migrated = store.migrate().await.context("migration failed");
            telemetry.shutdown();
            migrated?;
            println!("migrations applied");
            Ok(())
        }
        Command::DevJwt { .. } => {
            let settings = settings()?;
            let secret = settings
                .auth
                .hs256_secret
                .clone()
                .unwrap_or_else(|| DEV_SECRET.to_owned());
            println!(
                "{}",
                privint::grpc::cli::dev_jwt(
                    &command,
                    &secret,
                    &settings.auth.issuer,
                    &settings.auth.audience
                )?
            );
            Ok(())
        }
        command => privint::grpc::cli::run_client(cli.client, command).await,
    }
}

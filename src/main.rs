use anyhow::Context;
use clap::Parser;
use oms::config::{Cli, Command};
use std::time::Duration;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Serve(args) = &cli.command {
        if let Some(threads) = args.worker_threads {
            runtime.worker_threads(usize::from(threads));
        }
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run_cli(cli)),
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli(cli: Cli) -> std::process::ExitCode {
    let telemetry = oms::telemetry::init(&cli.telemetry);
    let outcome = run(cli.command).await;
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole cause chain, on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let app = oms::app::start(*args).await?;
            let failed = app.shutdown_token();
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!("shutting down");
                    app.stop().await;
                }
                // A component that cannot run stops the service (its cause is in the log).
                _ = failed.cancelled() => {
                    app.stop().await;
                    anyhow::bail!("a component could not start; see the log above");
                }
            }
        }
        Command::Migrate(args) => {
            let database = oms::db::connect(&args)?;
            oms::db::migrate(&args, &database).await?;
            tracing::info!("migrations applied");
        }
        Command::Seed(args) => {
            let database = oms::db::connect(&args)?;
            let created = oms::seed::seed_demo_inventory(&database.db).await?;
            tracing::info!(created, "demo inventory seeded");
        }
        Command::Token(args) => {
            let provider = args.auth.jwt_jwks_url.is_some() || args.auth.jwt_issuer.is_some();
            anyhow::ensure!(
                !provider,
                "with an identity provider configured, tokens come from the provider; `oms token` signs only HS256 tokens"
            );
            let keys = if args.auth.jwt_secret.is_none() && !args.auth.dev_mode {
                eprintln!("note: JWT_SECRET is not set; signing with the development secret (oms serve --dev)");
                oms::auth::TokenKeys::new(oms::auth::DEV_SECRET.as_bytes())
            } else {
                args.auth.keys()?
            };
            let ttl = Duration::from_secs(args.ttl_hours * 3600);
            let profile: Vec<(&str, &str)> = [
                ("name", &args.name),
                ("email", &args.email),
                ("phone_number", &args.phone_number),
            ]
            .into_iter()
            .filter_map(|(claim, value)| Some((claim, value.as_deref()?)))
            .collect();
            println!(
                "{}",
                keys.issue_with_claims(&args.sub, args.role, ttl, &profile)
            );
        }
        Command::Schema => print!("{}", oms::graphql::sdl()),
        Command::Dlq(action) => oms::kafka::dlq::run(&action).await?,
        Command::Check(args) => {
            let database = oms::db::connect(&args)?;
            let report = oms::service::audit::audit(&database.db)
                .await
                .context("reading the database")?;
            for violation in &report.violations {
                println!("VIOLATION {violation}");
            }
            println!(
                "checked {} SKUs and {} orders: {} violations",
                report.skus_checked,
                report.orders_checked,
                report.violations.len()
            );
            anyhow::ensure!(report.violations.is_empty(), "invariants violated");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

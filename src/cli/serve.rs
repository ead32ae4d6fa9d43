//! `hookflow serve`: resolve settings, bind the listeners, serve until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::info;

use super::ServeArgs;
use crate::serve::{self, ServerError};
use crate::settings::{Overrides, ServeSettings};

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::observe::telemetry::init(args.log_format, "info");
    let settings = ServeSettings::resolve(&Overrides {
        config: args.config,
        listen: args.listen,
        admin_listen: args.admin_listen,
        workflows: args.workflows,
        store: args.store,
        workers: args.workers,
        max_running: args.max_running,
        smtp: args.smtp,
        email_from: args.email_from,
        admin_token: args.admin_token,
        admin_insecure: args.admin_insecure,
        admin_allowed_hosts: args.admin_allowed_hosts,
        secrets_dir: args.secrets_dir,
        trusted_proxies: args.trusted_proxies,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    })?;
    let webhook = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let admin = TcpListener::bind(&settings.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", settings.admin_listen))?;
    let running = match serve::start(&settings, webhook, admin).await {
        Ok(r) => r,
        Err(ServerError::Invalid { count, diagnostics }) => {
            for d in diagnostics.sorted() {
                eprint!("{}", d.render());
            }
            anyhow::bail!("{count} problem(s) in the workflows; fix them and start again");
        }
        Err(err) => return Err(err.into()),
    };
    #[cfg(unix)]
    {
        // SIGHUP reloads the workflows, as daemons conventionally do.
        let hangup = running.hangup();
        if let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    info!("SIGHUP: reloading the workflows");
                    // The watcher reloads; a refused reload logs its problems and keeps the
                    // running set.
                    hangup.notify_one();
                }
            });
        }
    }
    let stopper = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down: finishing requests and runs in flight");
        let _ = stopper.send(true);
    });
    running.wait().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

//! `concord-exchange-sim --config sim.toml`: runs the exchange simulator until Ctrl-C.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: concord-exchange-sim --config <sim.toml>");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [flag, path] if flag == "--config" => path.clone(),
        _ => return usage(),
    };
    let config = match concord_exchange_sim::load_config(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %config.listen, "serving the Binance wallet API subset");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match concord_exchange_sim::serve(config, listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = app::config::Config::parse();
    if config.healthcheck {
        return match app::healthcheck(config.bind_addr).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    app::init_tracing();
    match app::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

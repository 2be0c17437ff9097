use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = app::config::Config::parse();
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

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Started again by the app to read a PDF within limits (`pdf_text`): no runtime, no threads.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(app::pdf_text::SUBCOMMAND) {
        return app::pdf_text::child_main(&args[1..]);
    }
    // Started again by the embedded engine to try one of llama.cpp's CPU builds (`cpu`).
    #[cfg(feature = "embedded")]
    if args.first().map(String::as_str) == Some(app::embedded::cpu::SUBCOMMAND) {
        return app::embedded::cpu::child_main(&args[1..]);
    }
    run()
}

#[tokio::main]
async fn run() -> std::process::ExitCode {
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

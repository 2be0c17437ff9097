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
    let telemetry = match app::telemetry::init(config.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let served = app::serve(config).await;
    if let Err(error) = &served {
        tracing::error!("{error:#}");
    }
    // The spans still queued, before the process ends.
    telemetry.shutdown().await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    admit::cli::run(admit::cli::Cli::parse()).await
}

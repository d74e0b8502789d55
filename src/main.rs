use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = admit::cli::Cli::parse();
    match admit::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` keeps the whole cause chain on one line.
            eprintln!("admit: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `orderflowctl`: consumer-group lag, state and offset reset (see `orderflowctl --help`).

use std::process::ExitCode;

use clap::Parser;
use orderflowctl::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let kafka = match args.kafka() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("orderflowctl: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    match cli::run(&args, &kafka, &mut out, &mut err) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orderflowctl: {}", e.message(&kafka.bootstrap));
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

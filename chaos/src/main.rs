//! `seata-chaos`: see the library's documentation (`chaos/src/lib.rs`) and the README's
//! `## Chaos` section. Exits 0 when every invariant held, 1 when one broke, 2 on a setup error.

use clap::Parser;
use seata_chaos::args::{Cli, Sub};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.worker {
        Some(Sub::Worker(w)) => match seata_chaos::worker::run(w).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("seata-chaos worker: {e:#}");
                2
            }
        },
        None => match seata_chaos::run::run(cli.run).await {
            Ok(summary) => {
                println!("{}", summary.line());
                if summary.ok() {
                    0
                } else {
                    1
                }
            }
            Err(e) => {
                eprintln!("seata-chaos: {e:#}");
                2
            }
        },
    };
    std::process::exit(code);
}

//! The `ferrolb-speaker` binary: parse flags, set up logging, run.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ferrolb_speaker::Args::parse();
    ferrolb_observe::init_logging(&args.log_format);
    ferrolb_speaker::run(args).await
}

//! The `ferrolb-controller` binary: parse flags, set up logging, run.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ferrolb_controller::Args::parse();
    ferrolb_controller::init_logging(&args.log_format);
    ferrolb_controller::run(args).await
}

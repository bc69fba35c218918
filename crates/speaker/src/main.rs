//! The `ferrolb-speaker` binary: parse flags, set up logging, run.

use clap::Parser;

/// Exit status when a thread or task panicked.
const PANICKED: i32 = 70;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ferrolb_speaker::Args::parse();
    ferrolb_observe::init_logging(&args.log_format);
    // No half-alive speaker: a panic anywhere (a link's reader thread, a claim, the gossip task)
    // ends the process with a non-zero status, so the kubelet restarts all of it, instead of
    // leaving a speaker that answers for IPs it no longer follows, or follows IPs it no longer
    // answers. Tasks that end without panicking are watched by the runtime, which exits too.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(%info, "a part of the speaker panicked; exiting");
        std::process::exit(PANICKED);
    }));
    ferrolb_speaker::run(args).await
}

//! The `ferrolb-speaker` binary: parse flags, set up logging, run.

use clap::Parser;

/// Exit status when a thread or task panicked.
const PANICKED: i32 = 70;

/// Async workers: the speaker's loop, gossip and the watches need little CPU, and the thread
/// count must not follow the node's core count (the links' threads do the per-frame work).
const WORKERS: usize = 2;
/// Blocking helpers (name resolution for the API client).
const BLOCKING: usize = 2;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
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

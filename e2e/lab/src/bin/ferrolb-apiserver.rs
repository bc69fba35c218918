//! Runs the test Kubernetes API server on its own, writes a kubeconfig, and serves until Ctrl-C.
//!
//! `ferrolb-apiserver --listen 127.0.0.1:6443 --kubeconfig /tmp/ferrolb.kubeconfig`, then
//! `KUBECONFIG=/tmp/ferrolb.kubeconfig kubectl get ns`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use test_apiserver::{ApiServer, ServerConfig, StoreConfig};

#[derive(Debug, Parser)]
#[command(about = "In-memory Kubernetes API server for ferrolb's tests and lab")]
struct Args {
    /// Address to listen on (loopback only: the server has no authentication).
    #[arg(long, env = "FERROLB_APISERVER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig for clients.
    #[arg(long, env = "FERROLB_APISERVER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Service cluster IP ranges, primary family first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "198.51.100.0/24,2001:db8:96::/108"
    )]
    service_cluster_ip_range: Vec<String>,
    /// Also register ferrolb's CRDs at start.
    #[arg(long)]
    ferrolb_crds: bool,
}

/// The lab runs the server inside its own network namespace on a documentation address; any
/// other address could expose an unauthenticated API.
fn documentation_address(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        std::net::IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() && !documentation_address(args.listen.ip()) {
        anyhow::bail!(
            "--listen must be a loopback or documentation address (lab namespaces): the test API server has no authentication"
        );
    }
    let server = ApiServer::start(ServerConfig {
        listen: args.listen,
        store: StoreConfig {
            service_ranges: args.service_cluster_ip_range,
            ..StoreConfig::default()
        },
        ..ServerConfig::default()
    })
    .await?;
    if args.ferrolb_crds {
        ferrolb_lab::register_ferrolb_crds(&server)?;
    }
    if let Some(path) = &args.kubeconfig {
        server.write_kubeconfig(path)?;
        tracing::info!(kubeconfig = %path.display(), url = %server.url(), "test API server ready");
    } else {
        tracing::info!(url = %server.url(), "test API server ready");
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

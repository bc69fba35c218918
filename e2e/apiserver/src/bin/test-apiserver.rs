//! Runs the test Kubernetes API server on its own, writes a kubeconfig, and serves until Ctrl-C.
//!
//! `test-apiserver --listen 127.0.0.1:6443 --kubeconfig /tmp/kubeconfig --crds crds.yaml`, then
//! `KUBECONFIG=/tmp/kubeconfig kubectl get ns`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use serde_json::Value;
use test_apiserver::{ApiServer, ServerConfig, StoreConfig};

#[derive(Debug, Parser)]
#[command(about = "In-memory Kubernetes API server for tests: kube-rs and kubectl talk to it")]
struct Args {
    /// Address to listen on: loopback or a documentation address (the server has no
    /// authentication).
    #[arg(long, env = "TEST_APISERVER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig for clients (written once the server listens).
    #[arg(long, env = "TEST_APISERVER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Service cluster IP ranges, primary family first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "198.51.100.0/24,2001:db8:96::/108"
    )]
    service_cluster_ip_range: Vec<String>,
    /// YAML files of CustomResourceDefinitions to serve (several documents per file allowed).
    #[arg(long, num_args = 1..)]
    crds: Vec<PathBuf>,
}

/// Lab network namespaces use documentation addresses (RFC 5737, RFC 3849); any other address
/// could expose an unauthenticated API.
fn documentation_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
    }
}

/// The documents of a multi-document YAML file, empty ones skipped.
fn yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn load_crds(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    yaml_documents(&text).with_context(|| format!("parsing {} as YAML", path.display()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !documentation_address(args.listen.ip()) {
        anyhow::bail!(
            "--listen must be a loopback or documentation address: the test API server has no authentication"
        );
    }
    let mut crds = Vec::new();
    for path in &args.crds {
        crds.extend(load_crds(path)?);
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
    server.register_crds(crds)?;
    if let Some(path) = &args.kubeconfig {
        // Written whole under another name, then renamed: a client polling for the file never
        // reads half of it.
        let partial = path.with_extension("partial");
        server.write_kubeconfig(&partial)?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("writing the kubeconfig {}", path.display()))?;
        tracing::info!(kubeconfig = %path.display(), url = %server.url(), "test API server ready");
    } else {
        tracing::info!(url = %server.url(), "test API server ready");
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(Args::parse()).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_documentation_addresses_pass_besides_loopback() {
        for ip in ["192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1"] {
            assert!(documentation_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "::", "::ffff:192.0.2.1"] {
            assert!(!documentation_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn multi_document_yaml_gives_each_document_and_skips_empty_ones() {
        let docs = yaml_documents("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(
            docs,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
    }
}

//! A Kubernetes API server stand-in for tests: one process, in memory, plain HTTP on loopback.
//!
//! Start it with [`ApiServer::start`]; point any client at [`ApiServer::kubeconfig`]. It serves
//! the built-in kinds ferrolb uses and any kind registered with a CustomResourceDefinition.

mod crd_schema;
pub mod error;
mod events;
mod http;
pub mod kubectl;
pub mod patch;
pub mod resources;
pub mod selector;
mod services;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use store::{Store, StoreConfig};

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Store settings (event log size, service ranges).
    pub store: StoreConfig,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: StoreConfig::default(),
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    config: ServerConfig,
    audit: Arc<std::sync::Mutex<Vec<WriteRecord>>>,
    listeners: usize,
    shutdown: tokio::sync::watch::Sender<bool>,
}

pub use http::WriteRecord;

impl ApiServer {
    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// When the address cannot be bound or the config is invalid.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Self> {
        let store = Arc::new(Store::new(&config.store).map_err(anyhow::Error::msg)?);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let mut server = Self {
            addr: config.listen,
            store,
            config: config.clone(),
            audit: Arc::default(),
            listeners: 0,
            shutdown,
        };
        server.addr = server.serve(config.listen).await?;
        Ok(server)
    }

    async fn serve(&mut self, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = http::App {
            store: self.store.clone(),
            bookmark_interval: self.config.bookmark_interval,
            listener: self.listeners,
            audit: self.audit.clone(),
        };
        self.listeners += 1;
        let mut stopped = self.shutdown.subscribe();
        // As Go's net package (and so kube-apiserver) does: without it, Nagle's algorithm holds
        // each small watch event behind the client's delayed ACK (40 ms) whenever events come
        // faster than ACKs.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        tokio::spawn(async move {
            let serve =
                axum::serve(listener, http::router(app)).with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "test API server stopped");
            }
        });
        Ok(addr)
    }

    /// Opens another loopback port onto the same store, so a test can tell two clients' writes
    /// apart ([`WriteRecord::listener`]). Returns its URL; listener numbers count from 0 (the
    /// first port).
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn add_listener(&mut self) -> anyhow::Result<String> {
        let addr = self.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Ok(format!("http://{addr}"))
    }

    /// Every write request so far.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the store, for tests that count or inspect writes.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A kubeconfig document for this server.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    /// Writes the kubeconfig to `path`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The kubeconfig clients use to reach a server at `url` (no authentication: loopback only).
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: ferrolb-e2e
  cluster:
    server: {url}
contexts:
- name: ferrolb-e2e
  context:
    cluster: ferrolb-e2e
    user: ferrolb-e2e
    namespace: default
current-context: ferrolb-e2e
users:
- name: ferrolb-e2e
  user:
    token: ferrolb-e2e
"
    )
}

impl ApiServer {
    /// Creates CustomResourceDefinitions, as `kubectl apply -f` of them would.
    ///
    /// # Errors
    /// When a CRD is refused.
    pub fn register_crds(
        &self,
        crds: impl IntoIterator<Item = serde_json::Value>,
    ) -> anyhow::Result<()> {
        let resource = self
            .store
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .ok_or_else(|| anyhow::anyhow!("CRDs are built in"))?;
        for crd in crds {
            self.store
                .create(&resource, "", crd, "test-apiserver")
                .map_err(|e| anyhow::anyhow!("registering a CRD: {e}"))?;
        }
        Ok(())
    }
}

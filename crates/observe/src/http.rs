//! `/metrics`, `/healthz` and `/readyz` on `--metrics-addr`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::exposition::{to_text_format, wants_openmetrics};
use crate::heartbeat::Heartbeat;

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Health {
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// Caches synced and configuration loaded (or standing by as a non-leader).
    pub ready: Arc<AtomicBool>,
    /// The process's loops: `/healthz` fails while one of them hangs.
    pub heartbeats: Vec<Arc<Heartbeat>>,
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the Prometheus text format.
async fn metrics(State(health): State<Health>, headers: HeaderMap) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &health.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if wants_openmetrics(accept) {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, kind)],
            to_text_format(&body),
        )
            .into_response()
    }
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// 200 while every loop beats; 503 naming each loop that hangs (the kubelet's liveness probe
/// then restarts the process).
async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let hung = hung_loops(&health.heartbeats, std::time::Instant::now());
    if hung.is_empty() {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, hung.join("; "))
    }
}

/// What `/healthz` says of each loop that hangs at `now`.
fn hung_loops(heartbeats: &[Arc<Heartbeat>], now: std::time::Instant) -> Vec<String> {
    heartbeats
        .iter()
        .filter_map(|h| {
            h.stale_at(now)
                .map(|since| format!("the {} has not run for {} s", h.name, since.as_secs()))
        })
        .collect()
}

/// Serves on a bound listener until the task is dropped.
pub async fn serve_on(listener: tokio::net::TcpListener, health: Health) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn healthz_names_the_loop_that_stopped_beating() {
        let engine = Arc::new(Heartbeat::new("engine loop", Duration::from_secs(10)));
        let standby = Arc::new(Heartbeat::new("standby loop", Duration::from_secs(10)));
        engine.beat();
        let loops = [engine, standby];
        assert!(hung_loops(&loops, Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(
            hung_loops(&loops, later),
            ["the engine loop has not run for 30 s"]
        );
    }
}

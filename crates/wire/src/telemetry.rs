//! Metrics in the Prometheus text format, shared by the coordinator and the modules.
//!
//! Both record with the `metrics` crate's macros (`concord_coordinator_*`,
//! `concord_module_*`); the process installs one recorder, [`prometheus`], the first time it
//! is asked for. The coordinator serves it at `GET /metrics` of its API; a module, which
//! listens on no other port, serves it on the `[metrics] listen` address of its configuration
//! ([`serve_metrics`]) when one is set. Metrics carry counts, states, durations and reason
//! codes: never a key, an address, an amount or a reason's words.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for durations, seconds: 1 ms to 2 minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's Prometheus recorder, installed as the global `metrics` recorder the first
/// time (if another recorder was installed before, this one renders only what it is given).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before Concord's: /metrics shows only what reaches this one");
        }
        handle
    })
}

/// The metrics now, in the Prometheus text format.
pub fn render() -> String {
    let handle = prometheus();
    handle.run_upkeep();
    handle.render()
}

/// Serves `GET /metrics` (the text format; any other path is a 404) on `listener` until the
/// process ends. Plain HTTP: bind it to loopback or a monitoring network (it shows counts
/// and durations, no secret).
pub async fn serve_metrics(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    prometheus();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render())
        }),
    );
    axum::serve(listener, app).await
}

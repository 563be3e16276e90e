//! `--metrics-addr HOST:PORT` of `hawser node` and `hawser raft`: serves every counter of the
//! node as Prometheus text at `http://HOST:PORT/metrics` (names in `docs/metrics.md`).
//!
//! Each scrape publishes the node's counters through the `metrics` facade
//! (`hawser_net::metrics::publish_node`) into the recorder here, then renders it: the values
//! are those of the moment of the scrape. The recorder keeps counters and gauges (all that
//! hawser publishes) and writes the Prometheus text format, version 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hawser_net::node::Node;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::addr::resolve;

/// The `--metrics-addr` option, shared by the commands that run a node.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve the node's counters as Prometheus text at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT", value_parser = resolve)]
    pub metrics_addr: Option<SocketAddr>,
}

/// A running `/metrics` endpoint; it stops when dropped.
pub struct MetricsServer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the endpoint if `--metrics-addr` was given, and says where on standard error.
///
/// # Errors
/// The address cannot be bound, or another metrics recorder is already installed.
pub async fn start(args: &MetricsArgs, node: &Node) -> anyhow::Result<Option<MetricsServer>> {
    let Some(addr) = args.metrics_addr else {
        return Ok(None);
    };
    let registry = Arc::new(Registry::default());
    metrics::set_global_recorder(Shared(registry.clone()))
        .context("installing the metrics recorder")?;
    hawser_net::metrics::describe();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("the metrics endpoint's address")?;
    let node = node.clone();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            hawser_net::metrics::publish_node(&node);
            let body = registry.render();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response() }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    eprintln!("hawser: metrics at http://{addr}/metrics");
    Ok(Some(MetricsServer { task }))
}

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counter or gauge, as `# TYPE` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric name: its type, help and a value per label set (rendered `{a="1",b="2"}`).
#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    series: BTreeMap<String, Arc<AtomicU64>>,
}

/// Every counter and gauge registered, by name. Gauges hold the bits of an `f64`, as the
/// facade's `GaugeFn` for `AtomicU64` writes them.
#[derive(Debug, Default)]
struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Registry {
    fn family<T>(&self, name: &str, kind: Kind, f: impl FnOnce(&mut Family) -> T) -> T {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            kind,
            help: String::new(),
            series: BTreeMap::new(),
        });
        family.kind = kind;
        f(family)
    }

    fn register(&self, key: &Key, kind: Kind) -> Arc<AtomicU64> {
        let mut labels = String::new();
        for (i, l) in key.labels().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(labels, "{sep}{}=\"{}\"", l.key(), escape(l.value(), true));
        }
        self.family(key.name(), kind, |f| {
            f.series.entry(labels).or_default().clone()
        })
    }

    fn describe(&self, name: &str, kind: Kind, help: &str) {
        self.family(name, kind, |f| f.help = help.to_owned());
    }

    /// Everything, in the Prometheus text format.
    fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, f) in families.iter().filter(|(_, f)| !f.series.is_empty()) {
            if !f.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", escape(&f.help, false));
            }
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, cell) in &f.series {
                let bits = cell.load(Ordering::Relaxed);
                let braces = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{labels}}}")
                };
                let _ = match f.kind {
                    Kind::Counter => writeln!(out, "{name}{braces} {bits}"),
                    Kind::Gauge => writeln!(out, "{name}{braces} {}", f64::from_bits(bits)),
                };
            }
        }
        out
    }
}

/// `s` with backslashes and line feeds escaped, and double quotes too in label values.
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// The recorder installed globally: the registry the endpoint renders.
struct Shared(Arc<Registry>);

impl Recorder for Shared {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, help: SharedString) {
        self.0.describe(name.as_str(), Kind::Counter, &help);
    }

    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, help: SharedString) {
        self.0.describe(name.as_str(), Kind::Gauge, &help);
    }

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.register(key, Kind::Counter))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.register(key, Kind::Gauge))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_prometheus_text_format() {
        let registry = Arc::new(Registry::default());
        let recorder = Shared(registry.clone());
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("hawser_x_total", "Things.\nMore.");
            metrics::counter!("hawser_x_total", "peer" => "2", "node" => "a\"b").absolute(7);
            metrics::counter!("hawser_x_total", "peer" => "3").absolute(1);
            metrics::gauge!("hawser_level").set(2.5);
        });
        assert_eq!(
            registry.render(),
            "# TYPE hawser_level gauge\n\
             hawser_level 2.5\n\
             # HELP hawser_x_total Things.\\nMore.\n\
             # TYPE hawser_x_total counter\n\
             hawser_x_total{peer=\"2\",node=\"a\\\"b\"} 7\n\
             hawser_x_total{peer=\"3\"} 1\n"
        );
    }
}

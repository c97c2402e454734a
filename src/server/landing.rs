//! The page at `/` until the live status page exists: links to what the exporter serves.

use http::StatusCode;

use super::routes::full;
use super::Body;

pub(super) fn page(telemetry_path: &str) -> http::Response<Body> {
    let path = html_escape(telemetry_path);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>agent-health-exporter</title></head>\n<body>\n<h1>agent-health-exporter</h1>\n<p>Probes a fleet of agents and exposes their health to Prometheus.</p>\n<ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body></html>\n"
    );
    full(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

//! The HTTP intake's metrics (`switchyard_http_*`, and `switchyard_gostatsd_*` for the
//! gostatsd aggregator routes), summed over shards. The per-endpoint families carry the
//! Datadog endpoints and the gostatsd routes (`endpoint="gostatsd_raw"`, `"gostatsd_event"`).

use super::Out;
use switchyard_core::egress::Endpoint;
use switchyard_core::statsd::LineError;
use switchyard_core::telemetry::{
    AggregatorFailure, AggregatorRoute, HttpConnectionError, HttpCounters, HttpRefusal,
    LATENCY_BUCKETS,
};

/// Renders the intake counters.
pub(super) fn render(o: &mut Out, h: &HttpCounters) {
    type Field = fn(&switchyard_core::telemetry::EndpointCounters) -> u64;
    let per_endpoint: [(&str, &str, Field); 5] = [
        (
            "switchyard_http_requests_total",
            "Requests received per intake endpoint.",
            |e| e.requests,
        ),
        (
            "switchyard_http_payloads_total",
            "Payloads accepted (202) per intake endpoint.",
            |e| e.payloads,
        ),
        (
            "switchyard_http_series_total",
            "Series (checks, events) in accepted payloads.",
            |e| e.series,
        ),
        (
            "switchyard_http_points_total",
            "Points in accepted payloads.",
            |e| e.points,
        ),
        (
            "switchyard_http_wire_bytes_total",
            "Accepted request bytes as received (compressed).",
            |e| e.wire_bytes,
        ),
    ];
    for (name, help, field) in per_endpoint {
        o.family(name, "counter", help);
        for ep in Endpoint::ALL {
            let v = h.endpoints.get(ep.index()).map_or(0, field);
            o.value(name, &[("endpoint", ep.label())], v as f64);
        }
        for r in AggregatorRoute::ALL {
            let v = h.gostatsd.routes.get(r.index()).map_or(0, field);
            o.value(name, &[("endpoint", r.label())], v as f64);
        }
    }
    o.family(
        "switchyard_http_decoded_bytes_total",
        "counter",
        "Accepted request bytes once decompressed (wire/decoded is the compression ratio).",
    );
    for ep in Endpoint::ALL {
        let v = h.endpoints.get(ep.index()).map_or(0, |e| e.decoded_bytes);
        o.value(
            "switchyard_http_decoded_bytes_total",
            &[("endpoint", ep.label())],
            v as f64,
        );
    }
    for r in AggregatorRoute::ALL {
        let v = h
            .gostatsd
            .routes
            .get(r.index())
            .map_or(0, |e| e.decoded_bytes);
        o.value(
            "switchyard_http_decoded_bytes_total",
            &[("endpoint", r.label())],
            v as f64,
        );
    }
    gostatsd(o, h);
    o.family(
        "switchyard_http_errors_total",
        "counter",
        "Refused requests by reason (the status answered is in the `status` label).",
    );
    for r in HttpRefusal::ALL {
        let v = h.refused.get(r.index()).copied().unwrap_or(0);
        let status = r.status().to_string();
        o.value(
            "switchyard_http_errors_total",
            &[("reason", r.label()), ("status", &status)],
            v as f64,
        );
    }
    o.one(
        "switchyard_http_empty_bodies_total",
        "counter",
        "Empty request bodies (the Agent's keep-alive), answered 202.",
        h.empty_bodies as f64,
    );
    o.one(
        "switchyard_http_durable_payloads_total",
        "counter",
        "Payloads of durable routes answered 202 once every sink made them durable.",
        h.durable_payloads as f64,
    );
    o.one(
        "switchyard_http_validate_total",
        "counter",
        "GET /api/v1/validate requests.",
        h.validate as f64,
    );
    o.family(
        "switchyard_http_connections_total",
        "counter",
        "TCP connections accepted, closed at once over http.max_connections, and closed \
         after a failed TLS handshake.",
    );
    o.value(
        "switchyard_http_connections_total",
        &[("result", "accepted")],
        h.connections_accepted as f64,
    );
    o.value(
        "switchyard_http_connections_total",
        &[("result", "rejected")],
        h.connections_rejected as f64,
    );
    o.value(
        "switchyard_http_connections_total",
        &[("result", "tls_failed")],
        h.connections_tls_failed as f64,
    );
    o.family(
        "switchyard_http_connection_errors_total",
        "counter",
        "Connections closed outside an answered request: a head too slow (header_timeout) or too \
         large (header_too_large, 431), malformed (400), idle keep-alive, or a socket error.",
    );
    for r in HttpConnectionError::ALL {
        let v = h.connection_errors.get(r.index()).copied().unwrap_or(0);
        o.value(
            "switchyard_http_connection_errors_total",
            &[("reason", r.label())],
            v as f64,
        );
    }
    o.one(
        "switchyard_http_connections_open",
        "gauge",
        "Open intake connections.",
        h.connections_open as f64,
    );
    o.one(
        "switchyard_http_inflight_bytes",
        "gauge",
        "Request body bytes reserved by requests in progress.",
        h.inflight_bytes as f64,
    );
    let name = "switchyard_http_request_duration_seconds";
    o.family(
        name,
        "histogram",
        "Time from a POST's head to its answer (body read, decode, parse, enqueue).",
    );
    let mut cumulative = 0u64;
    for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += h.latency.buckets.get(i).copied().unwrap_or(0);
        let le = le.to_string();
        o.value(&format!("{name}_bucket"), &[("le", &le)], cumulative as f64);
    }
    o.value(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        h.latency.count as f64,
    );
    o.value(&format!("{name}_sum"), &[], h.latency.sum_ns as f64 / 1e9);
    o.value(&format!("{name}_count"), &[], h.latency.count as f64);
}

/// The gostatsd routes' own families: failures by reason, series by result.
fn gostatsd(o: &mut Out, h: &HttpCounters) {
    let g = &h.gostatsd;
    let name = "switchyard_aggregator_errors_total";
    o.family(
        name,
        "counter",
        "gostatsd route requests not answered 202, by reason (encoding, decompress, unmarshal: \
         400; too_large: 413; read: 408 or 500; method_not_allowed: 405; unavailable: 429 or 503).",
    );
    for r in AggregatorRoute::ALL {
        for f in AggregatorFailure::ALL {
            let v = g
                .failures
                .get(r.index())
                .and_then(|x| x.get(f.index()))
                .copied()
                .unwrap_or(0);
            o.value(
                name,
                &[("endpoint", r.label()), ("reason", f.label())],
                v as f64,
            );
        }
    }
    let name = "switchyard_aggregator_series_total";
    o.family(
        name,
        "counter",
        "Series of accepted /v2/raw bodies: folded into the aggregates, or refused by the \
         aggregator (the statsd line reasons).",
    );
    o.value(name, &[("result", "ok")], g.series_ok as f64);
    for r in LineError::ALL {
        let v = g.series_error.get(r.index()).copied().unwrap_or(0);
        o.value(
            name,
            &[("result", "error"), ("reason", r.reason())],
            v as f64,
        );
    }
    o.one(
        "switchyard_gostatsd_health_checks_total",
        "counter",
        "GET /healthcheck and GET /deepcheck requests answered.",
        g.health_checks as f64,
    );
}

"""Drive the real Datadog HTTP clients (PyPI `datadog` and `datadog-api-client`) against a
Datadog-compatible endpoint: Switchyard's HTTP intake in the end-to-end tests.

Usage: ddhttp.py datadogpy|threadstats|apiclient BASE_URL API_KEY

Every call must succeed (the client raises or returns errors otherwise, and this script exits
non-zero). The Rust test asserts what reached the vendors.
"""
import sys
import time

MODE, BASE, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
TS = 1700000000


def check(resp, what):
    if isinstance(resp, dict) and resp.get("errors"):
        raise SystemExit("%s: errors %r" % (what, resp["errors"]))
    return resp


def datadogpy():
    from datadog import initialize, api
    initialize(api_key=KEY, app_key="app-key-not-needed", api_host=BASE, host_name="py-host")
    # Plain JSON, one series, two points.
    check(api.Metric.send(metric="app.requests", points=[(TS, 1), (TS + 10, 3)], type="count",
                          interval=10, host="web-1", tags=["env:prod", "role:web", "canary"]),
          "series plain")
    # deflate (zlib), three series: gauge, rate, untyped with a bare value.
    check(api.Metric.send(metrics=[
        {"metric": "system.load.1", "points": [(TS, 0.7)], "type": "gauge", "host": "web-1",
         "tags": ["env:prod"]},
        {"metric": "net.bytes_rcvd", "points": [(TS, 1234.5)], "type": "rate", "interval": 10,
         "tags": ["iface:eth0"]},
        {"metric": "custom.untyped", "points": 5.0},
    ], compress_payload=True), "series deflate")
    check(api.Event.create(title="Disk full", text="/var is at 99%", tags=["env:prod"],
                           alert_type="error", priority="normal", aggregation_key="disk-web-1",
                           source_type_name="my_apps", host="web-1", date_happened=TS), "event")
    check(api.ServiceCheck.check(check="app.ok", host_name="web-1", status=1,
                                 message="latency high", tags=["env:prod"], timestamp=TS),
          "service check")
    check(api.Distribution.send(distributions=[{
        "metric": "request.latency", "points": [(TS, [0.1, 0.2, 0.35])], "tags": ["env:prod"]}]),
        "distribution")


def threadstats():
    from datadog import initialize
    from datadog.threadstats import ThreadStats
    initialize(api_key=KEY, app_key="app-key-not-needed", api_host=BASE, host_name="py-host")
    ts = ThreadStats(constant_tags=["app:demo"])
    ts.start(flush_interval=3600, roll_up_interval=10, flush_in_thread=False,
             flush_in_greenlet=False)
    now = time.time() - 30
    ts.increment("ts.jobs", 3, timestamp=now)
    ts.gauge("ts.temp", 21.5, timestamp=now)
    ts.histogram("ts.latency", 0.2, timestamp=now)
    ts.histogram("ts.latency", 0.4, timestamp=now)
    ts.flush(time.time() + 60)


def apiclient():
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.v1.api.metrics_api import MetricsApi as MetricsV1
    from datadog_api_client.v1.api.service_checks_api import ServiceChecksApi
    from datadog_api_client.v1.api.events_api import EventsApi
    from datadog_api_client.v1.model.metrics_payload import MetricsPayload
    from datadog_api_client.v1.model.series import Series
    from datadog_api_client.v1.model.point import Point
    from datadog_api_client.v1.model.metric_content_encoding import MetricContentEncoding as EncV1
    from datadog_api_client.v1.model.distribution_points_payload import DistributionPointsPayload
    from datadog_api_client.v1.model.distribution_points_series import DistributionPointsSeries
    from datadog_api_client.v1.model.distribution_point import DistributionPoint
    from datadog_api_client.v1.model.distribution_points_content_encoding import (
        DistributionPointsContentEncoding)
    from datadog_api_client.v1.model.service_check import ServiceCheck
    from datadog_api_client.v1.model.service_checks import ServiceChecks
    from datadog_api_client.v1.model.service_check_status import ServiceCheckStatus
    from datadog_api_client.v1.model.event_create_request import EventCreateRequest
    from datadog_api_client.v1.model.event_alert_type import EventAlertType
    from datadog_api_client.v2.api.metrics_api import MetricsApi as MetricsV2
    from datadog_api_client.v2.model.metric_payload import MetricPayload
    from datadog_api_client.v2.model.metric_series import MetricSeries
    from datadog_api_client.v2.model.metric_point import MetricPoint
    from datadog_api_client.v2.model.metric_resource import MetricResource
    from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
    from datadog_api_client.v2.model.metric_content_encoding import MetricContentEncoding as EncV2

    conf = Configuration(host=BASE)
    conf.api_key["apiKeyAuth"] = KEY
    with ApiClient(conf) as c:
        v1 = MetricsV1(c)
        plain = MetricsPayload(series=[Series(
            metric="client.v1.plain", type="gauge", host="web-1",
            points=[Point([float(TS), 0.7]), Point([float(TS + 10), 0.9])],
            tags=["env:prod", "role:web"])])
        check(v1.submit_metrics(body=plain), "v1 plain")
        for enc in ("gzip", "deflate"):
            body = MetricsPayload(series=[Series(
                metric="client.v1." + enc, type="count", interval=10,
                points=[Point([float(TS), 12.0])], tags=["env:prod"])])
            check(v1.submit_metrics(body=body, content_encoding=EncV1(enc)), "v1 " + enc)
        v2 = MetricsV2(c)
        for enc in (None, "zstd1", "gzip"):
            name = "client.v2." + (enc or "plain")
            body = MetricPayload(series=[
                MetricSeries(metric=name, type=MetricIntakeType.GAUGE, unit="load",
                             points=[MetricPoint(timestamp=TS, value=0.5),
                                     MetricPoint(timestamp=TS + 10, value=1.5)],
                             resources=[MetricResource(name="web-2", type="host")],
                             tags=["env:prod"]),
                MetricSeries(metric=name + ".count", type=MetricIntakeType.COUNT, interval=10,
                             points=[MetricPoint(timestamp=TS, value=12.0)], tags=["env:prod"]),
            ])
            if enc is None:
                check(v2.submit_metrics(body=body), "v2 plain")
            else:
                check(v2.submit_metrics(body=body, content_encoding=EncV2(enc)), "v2 " + enc)
        dbody = DistributionPointsPayload(series=[DistributionPointsSeries(
            metric="client.latency", host="web-1", tags=["env:prod"],
            points=[DistributionPoint([float(TS), [0.1, 0.2, 0.35]])])])
        check(v1.submit_distribution_points(
            body=dbody, content_encoding=DistributionPointsContentEncoding("deflate")),
            "distribution points")
        sc = ServiceChecks([ServiceCheck(check="client.ok", host_name="web-1",
                                         message="app is running",
                                         status=ServiceCheckStatus.OK, tags=["env:prod"])])
        check(ServiceChecksApi(c).submit_service_check(body=sc), "check_run")
        ev = EventCreateRequest(title="Deploy", text="Oh boy!", tags=["env:prod"],
                                alert_type=EventAlertType.INFO, host="web-1", date_happened=TS)
        check(EventsApi(c).create_event(body=ev), "event")


{"datadogpy": datadogpy, "threadstats": threadstats, "apiclient": apiclient}[MODE]()
print("ok")

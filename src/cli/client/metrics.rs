//! `ezforge metrics`: a server's requests, errors, challenges, latency, methods, tools and auth
//! failures.

use serde_json::Value;

use super::api::seg;
use super::args::MetricsArgs;
use super::ctx::Ctx;
use super::output::{cell, clean, pairs, print_json, table, text};

pub async fn metrics(ctx: &Ctx, args: &MetricsArgs) -> anyhow::Result<()> {
    let api = ctx.api()?;
    let m = api
        .get_with(
            &format!("/servers/{}/metrics", seg(&args.server)),
            &[("window", args.window.clone())],
        )
        .await?;
    if ctx.json {
        return print_json(&m);
    }
    print!("{}", render(&clean(&args.server), &m));
    Ok(())
}

/// The whole report, as `metrics` prints it.
fn render(server: &str, m: &Value) -> String {
    let null = Value::Null;
    let errors = m.get("errors").unwrap_or(&null);
    let latency = m.get("latencyMs").unwrap_or(&null);
    let upstream = m.get("upstream").unwrap_or(&null);
    let mut out = format!(
        "Server {server}, last {} ({} to {})\n",
        cell(m, "window"),
        cell(m, "from"),
        cell(m, "to")
    );
    out.push_str(&pairs(&[
        ("requests", cell(m, "requests")),
        (
            "errors",
            format!("{} 4xx, {} 5xx", count(errors, "4xx"), count(errors, "5xx")),
        ),
        ("error rate", percent(m.get("errorRate").unwrap_or(&null))),
        ("challenges", challenges_line(m)),
        ("latency", latency_line(latency)),
        ("upstream", upstream_line(upstream)),
    ]));
    for (title, key, header) in [
        ("Methods", "methods", "METHOD"),
        ("Tools", "tools", "TOOL"),
        ("Auth failures", "authFailures", "REASON"),
    ] {
        out.push('\n');
        let rows = counts(m.get(key).unwrap_or(&null));
        if rows.is_empty() {
            out.push_str(&format!("{title}: none\n"));
        } else {
            out.push_str(&format!("{title}\n"));
            out.push_str(&table(&[header, "COUNT"], &rows));
        }
    }
    out
}

/// `12 401, 1 403 (6.50%): sign-in and step-up, not errors`; `-` from a server that does not
/// count them apart.
fn challenges_line(m: &Value) -> String {
    let Some(c) = m.get("challenges").filter(|c| c.is_object()) else {
        return "-".to_owned();
    };
    format!(
        "{} 401, {} 403 ({}): sign-in and step-up, not errors",
        count(c, "401"),
        count(c, "403"),
        percent(m.get("challengeRate").unwrap_or(&Value::Null))
    )
}

/// A number field, `0` when absent.
fn count(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(n) if n.is_number() => n.to_string(),
        _ => "0".to_owned(),
    }
}

/// `errorRate` is a fraction of the requests (0.0–1.0).
fn percent(v: &Value) -> String {
    match v.as_f64() {
        Some(r) => format!("{:.2}%", r * 100.0),
        None => "-".to_owned(),
    }
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0} ms"),
        Some(x) if x < 10.0 => format!("{x:.2} ms"),
        Some(x) => format!("{x:.1} ms"),
        None => "-".to_owned(),
    }
}

/// `p50 12 ms, p95 40 ms, p99 120 ms`, or `-` without requests.
fn latency_line(l: &Value) -> String {
    if !l.is_object() || ["p50", "p95", "p99"].iter().all(|k| l[k].is_null()) {
        return "- (no requests)".to_owned();
    }
    ["p50", "p95", "p99"]
        .iter()
        .map(|k| format!("{k} {}", ms(&l[k])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `healthy, 0 gateway errors (502/503/504)`.
fn upstream_line(u: &Value) -> String {
    if !u.is_object() {
        return "-".to_owned();
    }
    format!(
        "{}, {} gateway errors (502/503/504)",
        cell(u, "status"),
        count(u, "errors")
    )
}

/// `{"name": n, …}` as table rows, the largest count first, then by name.
fn counts(v: &Value) -> Vec<Vec<String>> {
    let Some(map) = v.as_object() else {
        return Vec::new();
    };
    let mut items: Vec<(&String, &Value)> = map.iter().collect();
    items.sort_by(|a, b| {
        let n = |v: &Value| v.as_f64().unwrap_or(0.0);
        n(b.1).total_cmp(&n(a.1)).then_with(|| a.0.cmp(b.0))
    });
    items
        .into_iter()
        .map(|(k, v)| vec![clean(k), text(v)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_report_shows_every_part() {
        let m = json!({
            "window": "24h", "from": "2026-01-14T10:00:00Z", "to": "2026-01-15T10:00:00Z",
            "requests": 200, "errors": {"4xx": 3, "5xx": 1}, "errorRate": 0.02,
            "challenges": {"401": 12, "403": 1}, "challengeRate": 0.065,
            "latencyMs": {"p50": 12, "p95": 40.25, "p99": 3.5},
            "methods": {"tools/list": 20, "tools/call": 150, "initialize": 20},
            "tools": {"get_weather": 150},
            "authFailures": {},
            "upstream": {"status": "healthy", "errors": 1},
        });
        assert_eq!(
            render("weather", &m),
            "Server weather, last 24h (2026-01-14T10:00:00Z to 2026-01-15T10:00:00Z)\n\
             \x20 requests    200\n\
             \x20 errors      3 4xx, 1 5xx\n\
             \x20 error rate  2.00%\n\
             \x20 challenges  12 401, 1 403 (6.50%): sign-in and step-up, not errors\n\
             \x20 latency     p50 12 ms, p95 40.2 ms, p99 3.50 ms\n\
             \x20 upstream    healthy, 1 gateway errors (502/503/504)\n\
             \n\
             Methods\n\
             METHOD      COUNT\n\
             tools/call  150\n\
             initialize  20\n\
             tools/list  20\n\
             \n\
             Tools\n\
             TOOL         COUNT\n\
             get_weather  150\n\
             \n\
             Auth failures: none\n"
        );
    }

    #[test]
    fn no_requests_means_no_latency() {
        let l = json!({"p50": null, "p95": null, "p99": null});
        assert_eq!(latency_line(&l), "- (no requests)");
        assert_eq!(latency_line(&Value::Null), "- (no requests)");
        assert_eq!(percent(&json!(0.0)), "0.00%");
        assert_eq!(percent(&Value::Null), "-");
        assert_eq!(challenges_line(&json!({"requests": 3})), "-");
    }
}

//! `ezforge usage` (`GET /v1/billing`): this month's front-door requests, process time and
//! bandwidth, against the limits the config reports.

use serde_json::Value;

use super::ctx::Ctx;
use super::output::{cell, pairs, print_json};

pub async fn usage(ctx: &Ctx) -> anyhow::Result<()> {
    let b = ctx.api()?.get("/billing").await?;
    if ctx.json {
        return print_json(&b);
    }
    print!("{}", render(&b));
    Ok(())
}

fn render(b: &Value) -> String {
    let null = Value::Null;
    let period = b.get("period").unwrap_or(&null);
    let usage = b.get("usage").unwrap_or(&null);
    let limits = b.get("limits").unwrap_or(&null);
    let mut out = format!(
        "Usage in {} ({} to {}), plan {}\n",
        cell(period, "month"),
        cell(period, "start"),
        cell(period, "end"),
        cell(b, "plan")
    );
    let of = |used: &str, limit: &str, show: fn(&Value) -> String| {
        let used = show(usage.get(used).unwrap_or(&null));
        match limits.get(limit).filter(|l| !l.is_null()) {
            Some(l) => format!("{used} of {}", show(l)),
            None => used,
        }
    };
    out.push_str(&pairs(&[
        ("requests", of("requestCount", "requestsPerMonth", number)),
        (
            "compute",
            of("computeSeconds", "computeSecondsPerMonth", seconds),
        ),
        (
            "bandwidth",
            of("bandwidthBytes", "bandwidthBytesPerMonth", bytes),
        ),
    ]));
    if [
        "requestsPerMonth",
        "computeSecondsPerMonth",
        "bandwidthBytesPerMonth",
    ]
    .iter()
    .any(|k| limits.get(k).is_some_and(|l| !l.is_null()))
    {
        out.push_str("Limits come from the server's [limits] config: reported, not enforced.\n");
    }
    out
}

fn number(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => n.to_string(),
        None => "-".to_owned(),
    }
}

fn seconds(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => format!("{n} s"),
        None => "-".to_owned(),
    }
}

/// Bytes, with a binary unit past 1 KiB.
fn bytes(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return "-".to_owned();
    };
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {} ({n} B)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_shows_each_count_and_its_limit() {
        let b = json!({
            "plan": "self_hosted",
            "period": {"month": "2026-01", "start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
            "usage": {"requestCount": 1200, "computeSeconds": 3600, "bandwidthBytes": 5_242_880},
            "limits": {"requestsPerMonth": 100_000, "computeSecondsPerMonth": null, "bandwidthBytesPerMonth": null},
        });
        assert_eq!(
            render(&b),
            "Usage in 2026-01 (2026-01-01T00:00:00Z to 2026-02-01T00:00:00Z), plan self_hosted\n\
             \x20 requests   1200 of 100000\n\
             \x20 compute    3600 s\n\
             \x20 bandwidth  5.0 MiB (5242880 B)\n\
             Limits come from the server's [limits] config: reported, not enforced.\n"
        );
    }

    #[test]
    fn byte_counts_read_in_units() {
        assert_eq!(bytes(&json!(0)), "0 B");
        assert_eq!(bytes(&json!(1023)), "1023 B");
        assert_eq!(bytes(&json!(1536)), "1.5 KiB (1536 B)");
        assert_eq!(bytes(&Value::Null), "-");
    }
}

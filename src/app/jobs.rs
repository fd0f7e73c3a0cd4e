//! What runs on a clock beside the requests: key maintenance, housekeeping (batched writes,
//! pruning, reaping), the deployer's ticks, and the first look at BYOA issuers.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::Services;
use crate::domain;
use crate::error::ErrorChain;
use crate::services::keys;
use crate::store;

/// Starts every job; they end when their handles are aborted.
pub(super) fn start(s: &Services) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(crate::services::gateway::issuer_check::check_all(
            s.gateway.clone(),
            (**s.outbound).clone(),
        )),
        tokio::spawn(key_maintenance(s.clone())),
        tokio::spawn(housekeeping(s.clone())),
        tokio::spawn(deploy_ticks(s.clone())),
    ]
}

fn every(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Picks up keys rotated by `ezforge keys rotate`, rotates on schedule, drops expired ones.
async fn key_maintenance(s: Services) {
    let mut tick = every(keys::RELOAD_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        refresh_keys(&s).await;
    }
}

/// Rotates the signing key when due and reloads the keyring from the store.
pub(super) async fn refresh_keys(s: &Services) {
    let (config, master_key, keyring) = (s.config.clone(), s.master_key.clone(), s.keys.clone());
    let result = s
        .store
        .run(move |conn| {
            let now = domain::now();
            let ttl = config.auth.access_token_ttl.as_secs();
            let every = config.auth.signing.rotate_after;
            if !every.0.is_zero()
                && let Some(kid) =
                    keys::rotate_if_due(conn, &master_key, now, every.as_secs(), ttl)?
            {
                tracing::info!(kid = %kid, "signing key rotated on schedule");
            }
            keyring.refresh(conn, &master_key, now)
        })
        .await;
    match result {
        Ok(true) => tracing::info!("signing keys reloaded"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %ErrorChain(&e), "signing key refresh failed"),
    }
}

/// Every 10 s: batched API key use and usage written, idle rate-limit buckets forgotten; every
/// 5 minutes the logs trimmed; hourly, unused dynamic clients reaped and expired tokens purged.
async fn housekeeping(s: Services) {
    let mut tick = every(Duration::from_secs(10));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        flush_key_usage(&s).await;
        prune_limiters(&s);
        crate::control::billing::flush_usage(&s.store, &s.gateway, &s.deployer).await;
        if ticks.is_multiple_of(30) {
            trim_logs(&s).await;
        }
        if ticks.is_multiple_of(360) {
            let now = domain::now();
            reap_clients(&s, now).await;
            purge_expired_refresh_tokens(&s, now).await;
            purge_revocations(&s, now).await;
        }
        ticks += 1;
    }
}

pub(super) async fn flush_key_usage(s: &Services) {
    let control = s.control.clone();
    if let Err(e) = s.store.run(move |c| control.key_usage.flush(c)).await {
        tracing::warn!(error = %ErrorChain(&e), "could not record API key use");
    }
}

fn prune_limiters(s: &Services) {
    s.control.limiter.prune();
    s.oauth.limiter.prune();
    s.gateway.limiter.prune();
    for server in s.gateway.registry.all() {
        if let Some(limiter) = &server.limiter {
            limiter.prune();
        }
    }
}

async fn trim_logs(s: &Services) {
    let before = domain::now_ms() - s.config.logs.retention.0.as_millis() as i64;
    let max = s.config.logs.max_entries;
    match s
        .store
        .run(move |c| store::server_log::retain(c, before, max))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(entries = n, "old log entries removed"),
        Err(e) => tracing::warn!(error = %ErrorChain(&e), "could not trim the logs"),
    }
}

/// Dynamic clients unused for `auth.registration.reap_unused_after` go, and their grants'
/// tokens with them.
async fn reap_clients(s: &Services, now: i64) {
    let before = now - s.config.auth.registration.reap_unused_after.as_secs();
    match s
        .store
        .write(move |tx| store::clients::reap_unused(tx, before, now))
        .await
    {
        Ok((n, revoked)) => {
            s.revoked.extend(revoked);
            if n > 0 {
                tracing::info!(clients = n, "removed unused dynamic clients");
            }
        }
        Err(e) => tracing::warn!(error = %ErrorChain(&e), "could not reap dynamic clients"),
    }
}

/// Expired refresh tokens (every rotation leaves one behind) are deleted in short
/// transactions, so that writers are never held up for long.
async fn purge_expired_refresh_tokens(s: &Services, now: i64) {
    const BATCH: i64 = 5_000;
    let mut total = 0;
    loop {
        match s
            .store
            .write(move |tx| store::grants::purge_expired_refresh(tx, now, BATCH))
            .await
        {
            Ok(n) => {
                total += n;
                if (n as i64) < BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "could not purge expired refresh tokens");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(tokens = total, "expired refresh tokens removed");
    }
}

/// Recorded revocations outlive every token they cover by a day.
async fn purge_revocations(s: &Services, now: i64) {
    let before = now - s.config.auth.access_token_ttl.as_secs() - 86_400;
    if let Err(e) = s
        .store
        .write(move |tx| store::grants::purge_revocations(tx, before))
        .await
    {
        tracing::warn!(error = %ErrorChain(&e), "could not purge old revocations");
    }
}

/// Every second: idle processes stopped, process time counted; every 5 s, processes found
/// listening beyond loopback; every 15 s, upstream URLs probed.
async fn deploy_ticks(s: Services) {
    let mut tick = every(Duration::from_secs(1));
    let mut last = Instant::now();
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        s.deployer.tick(last.elapsed());
        last = Instant::now();
        if ticks.is_multiple_of(5) {
            s.deployer.check_exposure().await;
        }
        if ticks.is_multiple_of(15) {
            s.deployer.probe_upstreams().await;
        }
        ticks += 1;
    }
}

//! Servers declared in the config file (`[[servers]]`): made to match the file at start and on
//! SIGHUP. The API shows them with `managedBy: "config"` and refuses to change them.

use rusqlite::Connection;
use serde_json::json;

use crate::config::{AuthMode, Config, ServerDecl};
use crate::domain;
use crate::domain::kinds::{ServerAuthMode, ServerStatus};
use crate::services::gateway::urls::ServerUrls;
use crate::store::audit::{self, Actor};
use crate::store::projects::ProjectRow;
use crate::store::servers::ServerRow;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "config key `servers[{index}].slug`: {slug} is already used by a server created through the API"
    )]
    Taken { index: usize, slug: String },
    #[error(
        "config key `servers[{index}].slug`: {slug} belonged to a deleted server of project {owner} and stays with that project (the server's URL is the identity its tokens, consents and upstream assertions name); declare it there or choose another slug"
    )]
    Retired {
        index: usize,
        slug: String,
        owner: String,
    },
    #[error(
        "config key `servers[{index}].project`: project {project} was made through the API and no instance admin owns it (any user may make a project, under any free name): declared servers go into a project the config makes, or one an admin owns; an admin joins it as an owner, or choose another project name"
    )]
    ProjectNotAdoptable { index: usize, project: String },
    #[error(
        "config key `servers[{index}].project`: server {slug} is in project {current}; a server does not move to another project (its URL, the identity its tokens and upstream assertions name, would go with it): keep it there, or declare a server with another slug"
    )]
    Moved {
        index: usize,
        slug: String,
        current: String,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// What the deleted servers' deletion revoked (on record; the caller tells the front door).
    pub revoked: store::servers::Removed,
}

fn desired(
    config: &Config,
    d: &ServerDecl,
    project_id: &str,
    existing: Option<&ServerRow>,
    now: i64,
) -> ServerRow {
    // `auth_mode` was checked when the config was read: one of the two names.
    let auth_mode = match (
        d.auth_mode.as_deref().and_then(ServerAuthMode::parse),
        config.auth.mode,
    ) {
        (Some(m), _) => m,
        (None, AuthMode::Byoa) => ServerAuthMode::Byoa,
        (None, AuthMode::Managed) if d.byoa.is_some() => ServerAuthMode::Byoa,
        (None, AuthMode::Managed) => ServerAuthMode::Managed,
    };
    ServerRow {
        id: existing.map_or_else(|| domain::new_id("srv_"), |e| e.id.clone()),
        project_id: project_id.to_owned(),
        name: d.name.clone().unwrap_or_else(|| d.slug.clone()),
        slug: d.slug.clone(),
        status: if d.upstream.is_some() {
            ServerStatus::Running
        } else {
            ServerStatus::Stopped
        },
        upstream_url: d.upstream.clone(),
        health_check_path: existing.and_then(|e| e.health_check_path.clone()),
        rollback_on_failure: existing.is_none_or(|e| e.rollback_on_failure),
        retention_count: existing.map_or(10, |e| e.retention_count),
        auto_stop_seconds: existing.and_then(|e| e.auto_stop_seconds),
        tool_scopes: serde_json::to_string(&d.tool_scopes).unwrap_or_else(|_| "{}".into()),
        auth_mode,
        byoa_config: d.byoa.as_ref().and_then(|b| serde_json::to_string(b).ok()),
        managed_by: "config".into(),
        rate_limit: d.rate_limit.and_then(|r| serde_json::to_string(&r).ok()),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    }
}

fn same(a: &ServerRow, b: &ServerRow) -> bool {
    (
        &a.project_id,
        &a.name,
        &a.upstream_url,
        &a.tool_scopes,
        &a.auth_mode,
        &a.byoa_config,
        &a.rate_limit,
    ) == (
        &b.project_id,
        &b.name,
        &b.upstream_url,
        &b.tool_scopes,
        &b.auth_mode,
        &b.byoa_config,
        &b.rate_limit,
    )
}

/// The slug of a project, or its id once it is gone.
fn project_name(conn: &Connection, id: &str) -> Result<String, StoreError> {
    Ok(store::projects::find(conn, id)?.map_or_else(|| id.to_owned(), |p| p.slug))
}

/// Makes the store's config-managed servers match `config.servers`, in one transaction
/// (blocking). `public_url`: where this instance is reached (servers' URLs are made from it).
pub fn reconcile(
    conn: &mut Connection,
    config: &Config,
    public_url: &str,
) -> Result<Report, ReconcileError> {
    let now = domain::now();
    let actor = Actor::system("config");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(StoreError::from)?;
    let mut report = Report::default();
    for (index, d) in config.servers.iter().enumerate() {
        let project = declared_project(&tx, &actor, index, d, now)?;
        let existing = store::servers::find(&tx, &d.slug)?;
        check_slug(&tx, index, d, &project, existing.as_ref())?;
        let want = desired(config, d, &project.id, existing.as_ref(), now);
        match &existing {
            None => {
                store::servers::insert(&tx, &want)?;
                audit::record(
                    &tx,
                    &actor,
                    "server.create",
                    Some(&want.id),
                    Some(&want.project_id),
                    Some(&json!({ "slug": want.slug })),
                )?;
                report.created += 1;
            }
            Some(e) if !same(e, &want) => {
                store::servers::update(&tx, &want)?;
                audit::record(
                    &tx,
                    &actor,
                    "server.update",
                    Some(&want.id),
                    Some(&want.project_id),
                    None,
                )?;
                report.updated += 1;
            }
            Some(_) => {}
        }
    }
    delete_undeclared(&tx, &actor, config, public_url, now, &mut report)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(report)
}

/// The project the `index`th declared server names, created (managed by the config) if it is
/// new; one made through the API only if the config may adopt it.
fn declared_project(
    tx: &Connection,
    actor: &Actor,
    index: usize,
    d: &ServerDecl,
    now: i64,
) -> Result<ProjectRow, ReconcileError> {
    if let Some(p) = store::projects::find(tx, &d.project)? {
        if p.managed_by != "config" && !store::projects::config_may_adopt(tx, &p.id)? {
            return Err(ReconcileError::ProjectNotAdoptable {
                index,
                project: p.slug,
            });
        }
        return Ok(p);
    }
    let p = ProjectRow {
        id: domain::new_id("proj_"),
        name: d.project.clone(),
        slug: d.project.clone(),
        managed_by: "config".into(),
        created_at: now,
        updated_at: now,
    };
    store::projects::insert(tx, &p)?;
    audit::record(
        tx,
        actor,
        "project.create",
        Some(&p.id),
        Some(&p.id),
        Some(&json!({ "slug": p.slug })),
    )?;
    Ok(p)
}

/// Whether the `index`th declaration may have its slug in `project`: not a server created
/// through the API, and a slug stays with its project, as through the API.
fn check_slug(
    tx: &Connection,
    index: usize,
    d: &ServerDecl,
    project: &ProjectRow,
    existing: Option<&ServerRow>,
) -> Result<(), ReconcileError> {
    if let Some(e) = existing
        && e.managed_by != "config"
    {
        return Err(ReconcileError::Taken {
            index,
            slug: d.slug.clone(),
        });
    }
    match existing {
        Some(e) if e.project_id != project.id => Err(ReconcileError::Moved {
            index,
            slug: d.slug.clone(),
            current: project_name(tx, &e.project_id)?,
        }),
        None => match store::servers::retired_to(tx, &d.slug)? {
            Some(owner) if owner != project.id => Err(ReconcileError::Retired {
                index,
                slug: d.slug.clone(),
                owner: project_name(tx, &owner)?,
            }),
            _ => Ok(()),
        },
        Some(_) => Ok(()),
    }
}

/// Deletes the config-managed servers the config no longer declares.
fn delete_undeclared(
    tx: &Connection,
    actor: &Actor,
    config: &Config,
    public_url: &str,
    now: i64,
    report: &mut Report,
) -> Result<(), StoreError> {
    for s in store::servers::all(tx)? {
        if s.managed_by == "config" && !config.servers.iter().any(|d| d.slug == s.slug) {
            let resource = ServerUrls::new(
                public_url,
                config.gateway.routing,
                config.gateway.server_domain.as_deref(),
            )
            .resource(&s.slug);
            let removed = store::servers::delete(tx, &s, &resource, now)?;
            report.revoked.grants.extend(removed.grants);
            report.revoked.clients.extend(removed.clients);
            audit::record(
                tx,
                actor,
                "server.delete",
                Some(&s.id),
                Some(&s.project_id),
                Some(&json!({ "slug": s.slug })),
            )?;
            report.deleted += 1;
        }
    }
    Ok(())
}

//! The route table: the table of contents of the HTTP surface. Order matters where prefixes
//! overlap: more specific scopes first.

use actix_web::web;

use crate::{control, gateway, oauth};

pub(super) fn routes(cfg: &mut web::ServiceConfig, managed: bool, metrics_here: bool) {
    if metrics_here {
        cfg.route("/metrics", web::get().to(crate::metrics::handler));
    }
    cfg.configure(gateway::routes);
    // In BYOA mode the authorization server's routes do not exist at all.
    if managed {
        cfg.configure(oauth::routes);
    }
    cfg.configure(control::routes)
        .default_service(web::to(control::not_found));
}

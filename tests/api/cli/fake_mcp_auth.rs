//! A deliberately misconfigured MCP server, for `ezforge doctor URL`: a real HTTP server on
//! 127.0.0.1:0 making, under each path prefix, the mistakes MCP clients trip on.
//!
//! - `/a/mcp`: 401 with a Bearer challenge without `resource_metadata` or `scope`; its
//!   protected-resource metadata (path-inserted) names another resource; its authorization
//!   server (`/as`) serves RFC 8414 metadata whose `issuer` is another, without S256, without
//!   any registration, without `iss`, with an http token endpoint beyond loopback.
//! - `/b/mcp`: a challenge naming metadata that is served nowhere.
//! - `/open/mcp`: answers without asking for a token.
//! - `/moved/mcp`: redirects.
//! - `/ll/mcp`: a challenge naming a cloud metadata service's address as its metadata.

use actix_web::dev::ServerHandle;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub struct MisconfiguredMcp {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    handle: ServerHandle,
}

impl Drop for MisconfiguredMcp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn answer(req: HttpRequest, origin: web::Data<String>) -> HttpResponse {
    let o = origin.get_ref();
    let post = req.method() == actix_web::http::Method::POST;
    match (post, req.path()) {
        (true, "/a/mcp") => HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Bearer realm=\"fake\""))
            .finish(),
        (false, "/.well-known/oauth-protected-resource/a/mcp") => HttpResponse::Ok().json(json!({
            "resource": "https://elsewhere.example/mcp",
            "authorization_servers": [format!("{o}/as")],
        })),
        (false, "/.well-known/oauth-authorization-server/as") => HttpResponse::Ok().json(json!({
            "issuer": format!("{o}/other"),
            "authorization_endpoint": format!("{o}/as/authorize"),
            "token_endpoint": "http://auth.example.com/token",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["plain"],
        })),
        (true, "/b/mcp") => HttpResponse::Unauthorized()
            .insert_header((
                "WWW-Authenticate",
                format!("Bearer resource_metadata=\"{o}/nowhere\", scope=\"read\""),
            ))
            .finish(),
        (true, "/open/mcp") => HttpResponse::Ok()
            .json(json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-06-18"}})),
        (true, "/moved/mcp") => HttpResponse::TemporaryRedirect()
            .insert_header(("Location", format!("{o}/moved/mcp/")))
            .finish(),
        (true, "/ll/mcp") => HttpResponse::Unauthorized()
            .insert_header((
                "WWW-Authenticate",
                "Bearer resource_metadata=\"http://169.254.169.254/latest/meta-data/\"",
            ))
            .finish(),
        _ => HttpResponse::NotFound().finish(),
    }
}

impl MisconfiguredMcp {
    pub async fn start() -> MisconfiguredMcp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let origin = format!("http://127.0.0.1:{port}");
        let data = web::Data::new(origin.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        MisconfiguredMcp { origin, handle }
    }
}

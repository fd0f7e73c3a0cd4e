//! Why the front door refuses a request or cannot complete it. Its stages return these; the
//! proxy turns each into its HTTP answer in one place (`proxy/challenges.rs`): an OAuth error
//! with a `WWW-Authenticate` challenge (RFC 6750) where a client should (re)authorize, else a
//! JSON-RPC error carrying the request's id.

use std::time::Duration;

use crate::domain::jsonrpc::ParseError;
use crate::services::gateway::verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No server answers to this slug or host (404).
    #[error("no such MCP server")]
    UnknownServer,
    /// A browser `Origin` that may not call this server (403; DNS rebinding).
    #[error("this Origin may not call this server")]
    ForbiddenOrigin,
    /// `?access_token=`: tokens are taken only from the `Authorization` header (400).
    #[error("tokens are accepted only in the Authorization header")]
    TokenInQuery,
    /// A content-encoded request body (415): the policy reads the body as sent.
    #[error("request bodies must not be content-encoded")]
    ContentEncoded,
    /// The body is longer than `gateway.body_limit` (413).
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The body broke off (400).
    #[error("could not read the request body")]
    BodyUnreadable,
    /// The body did not arrive within `gateway.body_timeout` (408).
    #[error("the request body took too long to arrive")]
    BodyTooSlow,
    /// The caller's bucket is empty (429, `Retry-After`).
    #[error("rate limit exceeded; retry later")]
    RateLimited { retry_after: Duration },
    /// No bearer token (401); the challenge asks for `scope`.
    #[error("a bearer token is required")]
    MissingToken { scope: String },
    /// An `Authorization: Bearer` header without a token (401).
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedAuthorization { scope: String },
    /// The token is refused (401).
    #[error("{cause}")]
    InvalidToken { scope: String, cause: VerifyError },
    /// The token's issuer cannot be reached to check it (503, `Retry-After`): not the token's
    /// fault, so no challenge.
    #[error("the token's issuer cannot be reached to check it; try again shortly")]
    IssuerUnavailable,
    /// The body is not JSON, or not JSON-RPC the policy can read one way only (400).
    #[error("the body is not JSON-RPC ({})", .0.reason())]
    Malformed(ParseError),
    /// `Mcp-Method` / `Mcp-Name` say otherwise than the body (400).
    #[error("{0}")]
    HeaderMismatch(&'static str),
    /// The token lacks scopes the request needs (403): `scope` is what to ask for instead,
    /// `description` names what is missing.
    #[error("{description}")]
    InsufficientScope { scope: String, description: String },
    /// A session id that is not one well-formed value (400).
    #[error("{0}")]
    SessionMalformed(&'static str),
    /// A session id this caller was not given (404; MCP clients then start anew).
    #[error("session not found")]
    SessionNotFound,
    /// The server has nothing deployed (503).
    #[error("this server has no upstream deployed")]
    NoUpstream,
    /// The supervised process is not ready (503).
    #[error("the MCP server is starting or restarting; retry shortly")]
    UpstreamStarting,
    /// A path that could climb above the upstream's base path (400).
    #[error("the request path must not hold dot segments or encoded slashes")]
    PathLeavesBase,
    /// A path that is no URI path (400).
    #[error("the request path is not valid")]
    PathInvalid,
    /// A method the upstream client cannot send (405).
    #[error("unsupported method")]
    MethodUnsupported,
    /// The upstream cannot be reached or did not answer properly (502): what the client is told.
    #[error("{0}")]
    Unreachable(&'static str),
    /// The upstream did not answer in time (504).
    #[error("the MCP server did not answer in time")]
    UpstreamTimeout,
}

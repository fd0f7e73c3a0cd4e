//! The answer an MCP server gives a request without a token: 401 with a `WWW-Authenticate:
//! Bearer` challenge naming its protected-resource metadata (`resource_metadata`, RFC 9728
//! §5.1) and the scope to ask for (`scope`, RFC 6750 §3). Parsing (RFC 9110 §11.6.1) and
//! judging are pure.

use url::Url;

use super::discovery;
use super::report::Check;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Lowercased.
    pub name: String,
    /// Unquoted and unescaped.
    pub value: String,
    /// Whether it came as a quoted-string (some clients read only those).
    pub quoted: bool,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// An unquoted value, read leniently: up to a comma or white space.
    fn bare(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| !matches!(c, ',' | ' ' | '\t')) {
            self.i += self.peek().map_or(1, char::len_utf8);
        }
        self.s[start..self.i].to_owned()
    }

    /// A quoted-string's content, unescaped (the opening quote is next).
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.s[self.i..].char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += at + 1;
                    return out;
                }
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        out.push(next);
                    }
                }
                c => out.push(c),
            }
        }
        self.i = self.s.len();
        out
    }
}

/// The challenges of one header value (several may share one, separated by commas).
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut c = Cursor { s: header, i: 0 };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        while matches!(c.peek(), Some(' ' | '\t' | ',')) {
            c.i += 1;
        }
        if c.peek().is_none() {
            return out;
        }
        let name = c.token();
        if name.is_empty() {
            // Not a token: skip the character, as a lenient reader would.
            c.i += c.peek().map_or(1, char::len_utf8);
            continue;
        }
        c.skip_ws();
        // `name=value` belongs to the challenge before it; a bare token starts a new one.
        // (A token68 such as `Basic abc==` reads as a parameter of its challenge: harmless.)
        match out.last_mut() {
            Some(current) if c.peek() == Some('=') => {
                c.i += 1;
                c.skip_ws();
                let quoted = c.peek() == Some('"');
                let value = if quoted { c.quoted() } else { c.bare() };
                current.params.push(Param {
                    name: name.to_ascii_lowercase(),
                    value,
                    quoted,
                });
            }
            _ => out.push(Challenge {
                scheme: name.to_owned(),
                params: Vec::new(),
            }),
        }
    }
}

/// What the challenge tells a client, once judged.
#[derive(Debug, Default)]
pub struct Judged {
    pub checks: Vec<Check>,
    /// The `resource_metadata` URL, when there is a usable one.
    pub resource_metadata: Option<String>,
    /// Whether the server asks for a token at all (else nothing else applies).
    pub protected: bool,
}

/// Judges the answer to an unauthenticated MCP request: its status and `WWW-Authenticate`
/// header values. `url` is the MCP server's.
pub fn judge(status: u16, location: Option<&str>, headers: &[String], url: &Url) -> Judged {
    let mut j = Judged::default();
    let (inserted, root) = discovery::prm_locations(url);
    let prm_url = inserted.unwrap_or(root);
    if let Some(not_401) = judge_status(status, location) {
        j.checks.push(not_401);
        return j;
    }
    j.protected = true;
    let challenges: Vec<Challenge> = headers.iter().flat_map(|h| parse(h)).collect();
    let bearer = match find_bearer(&challenges, &prm_url) {
        Ok(b) => b,
        Err(missing) => {
            j.checks.push(missing);
            return j;
        }
    };
    j.checks
        .push(Check::ok("challenge", "401 with a Bearer challenge"));
    let (check, resource_metadata) = judge_resource_metadata(bearer, &prm_url);
    j.checks.push(check);
    j.resource_metadata = resource_metadata;
    j.checks.push(judge_scope(bearer));
    j
}

/// The verdict on a status other than 401 (`None` for 401: the challenge is what counts).
fn judge_status(status: u16, location: Option<&str>) -> Option<Check> {
    match status {
        401 => None,
        200..=299 => Some(Check::warn(
            "challenge",
            format!(
                "answered HTTP {status} to a request without a token: the server does not ask MCP clients to authorize, so nothing else applies"
            ),
            "if it should be protected, answer 401 with WWW-Authenticate: Bearer resource_metadata=\"…\" to requests without a valid token",
        )),
        300..=399 => Some(Check::fail(
            "challenge",
            format!(
                "answered HTTP {status} (redirect to {}): MCP clients POST to the URL as given and do not follow",
                location.unwrap_or("nowhere")
            ),
            "give clients the final URL (mind a trailing slash), or serve MCP at this one",
        )),
        _ => Some(Check::fail(
            "challenge",
            format!("answered HTTP {status} to an MCP initialize request without a token, not 401"),
            "check the URL is the MCP endpoint (Streamable HTTP, POST); a protected server answers 401 with WWW-Authenticate: Bearer resource_metadata=\"…\"",
        )),
    }
}

/// The 401's Bearer challenge, or the failure saying what was offered instead.
fn find_bearer<'c>(challenges: &'c [Challenge], prm_url: &str) -> Result<&'c Challenge, Check> {
    if let Some(bearer) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    {
        return Ok(bearer);
    }
    let offered: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
    let seen = if offered.is_empty() {
        "401 without a WWW-Authenticate header".to_owned()
    } else {
        format!(
            "401 whose WWW-Authenticate offers {} but not Bearer",
            offered.join(", ")
        )
    };
    Err(Check::fail(
        "challenge",
        seen,
        format!(
            "answer 401 with WWW-Authenticate: Bearer resource_metadata=\"{prm_url}\", scope=\"…\""
        ),
    ))
}

/// The Bearer challenge's `resource_metadata`: present, an absolute http(s) URL, quoted, secure.
/// With the URL when it is usable.
fn judge_resource_metadata(bearer: &Challenge, prm_url: &str) -> (Check, Option<String>) {
    let Some(p) = bearer.param("resource_metadata") else {
        return (
            Check::fail(
                "challenge.resource_metadata",
                "the Bearer challenge names no resource_metadata: clients that follow MCP 2025-06-18 find no authorization server",
                format!("add resource_metadata=\"{prm_url}\" to the challenge (RFC 9728 §5.1)"),
            ),
            None,
        );
    };
    match Url::parse(&p.value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            let rm = &p.value;
            let check = if !p.quoted {
                Check::fail(
                    "challenge.resource_metadata",
                    format!(
                        "resource_metadata={rm} is not quoted: a URL is not a token, and clients that read quoted values only find none"
                    ),
                    format!("quote it: resource_metadata=\"{rm}\""),
                )
            } else if !discovery::is_secure(&u) {
                Check::fail(
                    "challenge.resource_metadata",
                    format!("resource_metadata=\"{rm}\" is plain http beyond this machine"),
                    "serve the metadata over https",
                )
            } else {
                Check::ok(
                    "challenge.resource_metadata",
                    format!("resource_metadata=\"{rm}\""),
                )
            };
            (check, Some(rm.clone()))
        }
        _ => (
            Check::fail(
                "challenge.resource_metadata",
                format!(
                    "resource_metadata={:?} is not an absolute http(s) URL",
                    p.value
                ),
                format!("name the metadata's full URL: resource_metadata=\"{prm_url}\""),
            ),
            None,
        ),
    }
}

/// The Bearer challenge's `scope`: what a client should ask for to start.
fn judge_scope(bearer: &Challenge) -> Check {
    match bearer.param("scope") {
        Some(p) if !p.value.trim().is_empty() => {
            Check::ok("challenge.scope", format!("scope=\"{}\"", p.value))
        }
        _ => Check::warn(
            "challenge.scope",
            "the challenge names no scope: clients then ask for every scope the metadata lists, or for none",
            "add scope=\"…\" with the scopes a client needs to start (MCP 2025-11-25)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::report::Status;

    #[test]
    fn challenges_parse_with_quoted_commas_escapes_and_several_per_header() {
        let got = parse(
            r#"Bearer error="invalid_token", error_description="a, \"quoted\" one", resource_metadata="https://x.example/.well-known/oauth-protected-resource/mcp", scope="mcp:read mcp:write""#,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].scheme, "Bearer");
        let value = |c: &Challenge, n: &str| c.param(n).map(|p| p.value.clone());
        assert_eq!(
            value(&got[0], "error_description").as_deref(),
            Some(r#"a, "quoted" one"#)
        );
        assert_eq!(
            value(&got[0], "resource_metadata").as_deref(),
            Some("https://x.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            value(&got[0], "scope").as_deref(),
            Some("mcp:read mcp:write")
        );
        let two = parse(
            r#"Basic realm="x", Bearer Resource_Metadata=https://a.example/m , DPoP algs="ES256""#,
        );
        let schemes: Vec<&str> = two.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        let rm = two[1].param("resource_metadata").expect("param");
        assert_eq!(
            (rm.value.as_str(), rm.quoted),
            ("https://a.example/m", false)
        );
        let token68 = parse("Basic dXNlcjpwYXNz==, Bearer");
        let schemes: Vec<&str> = token68.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer"]);
        assert!(parse("").is_empty());
        // Garbage does not panic.
        let _ = parse("\"unterminated, =,= \u{e9}=\"");
    }

    fn ids(j: &Judged) -> Vec<(&str, Status)> {
        j.checks.iter().map(|c| (c.id.as_str(), c.status)).collect()
    }

    #[test]
    fn a_complete_challenge_is_ok_and_gives_its_metadata_url() {
        let url = Url::parse("https://mcp.example.com/mcp").expect("url");
        let h = r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#;
        let j = judge(401, None, &[h.to_owned()], &url);
        assert!(j.protected);
        assert_eq!(
            ids(&j),
            [
                ("challenge", Status::Ok),
                ("challenge.resource_metadata", Status::Ok),
                ("challenge.scope", Status::Ok)
            ]
        );
        assert_eq!(
            j.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
    }

    #[test]
    fn what_clients_trip_on_in_a_challenge_fails_with_the_header_to_send() {
        let url = Url::parse("https://mcp.example.com/mcp").expect("url");
        let j = judge(401, None, &["Bearer realm=\"mcp\"".to_owned()], &url);
        assert_eq!(
            ids(&j),
            [
                ("challenge", Status::Ok),
                ("challenge.resource_metadata", Status::Fail),
                ("challenge.scope", Status::Warn)
            ]
        );
        assert!(
            j.checks[1]
                .fix
                .as_deref()
                .is_some_and(|f| f
                    .contains("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")),
            "{:?}",
            j.checks[1]
        );
        let none = judge(401, None, &[], &url);
        assert_eq!(ids(&none), [("challenge", Status::Fail)]);
        assert!(
            none.checks[0]
                .message
                .contains("without a WWW-Authenticate")
        );
        let basic = judge(401, None, &["Basic realm=\"x\"".to_owned()], &url);
        assert!(basic.checks[0].message.contains("not Bearer"));
        let bare = judge(
            401,
            None,
            &["Bearer resource_metadata=https://mcp.example.com/prm".to_owned()],
            &url,
        );
        assert_eq!(bare.checks[1].status, Status::Fail);
        assert!(bare.checks[1].message.contains("not quoted"));
        let relative = judge(
            401,
            None,
            &["Bearer resource_metadata=\"/prm\"".to_owned()],
            &url,
        );
        assert_eq!(relative.checks[1].status, Status::Fail);
        assert_eq!(relative.resource_metadata, None);
        let redirect = judge(307, Some("https://mcp.example.com/mcp/"), &[], &url);
        assert!(
            redirect.checks[0]
                .message
                .contains("https://mcp.example.com/mcp/")
        );
        assert!(!redirect.protected);
        let open = judge(200, None, &[], &url);
        assert_eq!(ids(&open), [("challenge", Status::Warn)]);
        assert_eq!(judge(404, None, &[], &url).checks[0].status, Status::Fail);
    }
}

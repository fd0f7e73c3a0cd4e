//! The 2024-11-05 HTTP+SSE transport's session: the `endpoint` event names where to POST, with
//! the session in the query (`?sessionId=…`, `?session_id=…` or `?sessionid=…`, as the TypeScript,
//! Python and Go SDKs spell it). Like `Mcp-Session-Id` (see [`crate::services::gateway::sessions`]), the client is
//! given the id sealed for the subject that opened the stream, and every request carrying one
//! must present it sealed for its own subject: anyone else's, or the upstream's bare id, is 404.
//!
//! Upstreams read query names loosely (Express's `qs` reads `sessionId[]`, `sessionId[0]` and
//! `sessionId%5B%5D` as `sessionId`; PHP reads `session.id` as `session_id`; older Go and Python
//! parsers also split on `;`), so a name counts as a session parameter when, decoded, with every
//! character that is not an ASCII letter or digit dropped (`ſ` and the Kelvin sign read as `s`
//! and `k`) and lowercased, it starts with `sessionid`. A query with one must present it sealed;
//! one with two, or with a `;` beside one, is refused as ambiguous.
//!
//! Sessions named in the path (`/messages/<id>`) are not sealed: which segment is an id is the
//! upstream's to know (docs/security.md, "Known limits").

use std::borrow::Cow;

use url::form_urlencoded;

/// Why a query's session does not reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The query is ambiguous about its session (400): the reason.
    Ambiguous(&'static str),
    /// The session is not one this caller was given (404).
    Unknown,
}

/// Whether a query parameter's name (still percent-encoded) names a session, however it is
/// spelt (see the module's documentation).
fn is_session_param(raw_name: &str) -> bool {
    let name: Cow<'_, str> = if raw_name.contains(['%', '+']) {
        form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map_or(Cow::Borrowed(""), |(n, _)| Cow::Owned(n.into_owned()))
    } else {
        Cow::Borrowed(raw_name)
    };
    let mut letters = name.chars().filter_map(|c| match c {
        '\u{017F}' => Some('s'),
        '\u{212A}' => Some('k'),
        c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
        _ => None,
    });
    "sessionid".chars().all(|w| letters.next() == Some(w))
}

/// The (still encoded) name of a `name=value` pair.
fn name_of(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n)
}

/// `query` with each session parameter's value replaced by `f(decoded value)` (encoded again),
/// or `None` where `f` refuses one. Other parameters are kept as they were sent.
fn map_sessions(query: &str, mut f: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(query.len() + 32);
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_session_param(name) {
            out.push_str(pair);
            continue;
        }
        let decoded: String = form_urlencoded::parse(format!("v={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        out.push_str(name);
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(f(&decoded)?.as_bytes()));
    }
    Some(out)
}

/// The query of the `endpoint` event's URL, its session sealed by `seal`.
pub fn seal_query(query: &str, seal: impl Fn(&str) -> String) -> String {
    map_sessions(query, |id| Some(seal(id))).unwrap_or_else(|| query.to_owned())
}

/// The query to forward: its one session parameter's sealed value opened by `open` (the
/// upstream's own id), the rest as it came. Refused when it names a session more than once
/// (however spelt, split at `&` or `;`), when it has a `;` beside a session, or when the
/// session does not open for this caller.
pub fn open_query(
    query: &str,
    open: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'_, str>, Refused> {
    let sessions = query
        .split(['&', ';'])
        .filter(|p| is_session_param(name_of(p)))
        .count();
    match sessions {
        0 => Ok(Cow::Borrowed(query)),
        1 if query.contains(';') => Err(Refused::Ambiguous(
            "a query with a session id may not contain ';'",
        )),
        1 => map_sessions(query, open)
            .map(Cow::Owned)
            .ok_or(Refused::Unknown),
        _ => Err(Refused::Ambiguous(
            "the query names a session more than once",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(id: &str) -> String {
        format!("{id}.SEALED")
    }

    fn open(v: &str) -> Option<String> {
        v.strip_suffix(".SEALED").map(str::to_owned)
    }

    /// What upstreams read as a session parameter: the SDKs' spellings, and what Express's
    /// `qs`, PHP and loose matchers make of others.
    const SPELLINGS: &[&str] = &[
        "sessionId",
        "session_id",
        "sessionid",
        "SESSIONID",
        "session-id",
        "session%5Fid",
        "sess%69onId",
        "sessionId[]",
        "sessionId%5B%5D",
        "sessionId%5b%5d",
        "sessionId[0]",
        "sessionId[a]",
        "session.id",
        "session%2Eid",
        "session[id]",
        "session+id",
        "session%20id",
        "[sessionId]",
        "_sessionId",
        "%C5%BFessionId",
        "sessionids",
        "session%FFid",
    ];

    #[test]
    fn every_spelling_of_a_session_parameter_is_sealed() {
        assert_eq!(seal_query("sessionId=abc", seal), "sessionId=abc.SEALED");
        assert_eq!(
            seal_query("x=1&session_id=a%2Bb+c&y", seal),
            "x=1&session_id=a%2Bb+c.SEALED&y"
        );
        for name in SPELLINGS {
            assert_eq!(
                seal_query(&format!("{name}=1"), seal),
                format!("{name}=1.SEALED"),
                "{name}"
            );
        }
        for other in ["session=1", "id=1", "xsessionid=1", "sessio=1", ""] {
            assert_eq!(seal_query(other, seal), other);
        }
    }

    #[test]
    fn only_one_sealed_session_opens() {
        assert_eq!(open_query("", open), Ok("".into()));
        assert_eq!(open_query("a=1&b", open), Ok("a=1&b".into()));
        assert_eq!(open_query("a=1;b=2", open), Ok("a=1;b=2".into()));
        assert_eq!(
            open_query("sessionId=abc.SEALED&x=%20", open),
            Ok("sessionId=abc&x=%20".into())
        );
        assert_eq!(
            open_query("session_id=a%2Bb+c.SEALED", open),
            Ok("session_id=a%2Bb+c".into()),
            "encoded as it was sent"
        );
        for name in SPELLINGS {
            assert_eq!(
                open_query(&format!("{name}=abc.SEALED"), open),
                Ok(format!("{name}=abc").into()),
                "{name}"
            );
            for bad in [
                format!("{name}=abc"),
                format!("{name}="),
                (*name).to_owned(),
            ] {
                assert_eq!(open_query(&bad, open), Err(Refused::Unknown), "{bad}");
            }
        }
        for twice in [
            "sessionId=abc.SEALED&SESSIONID=victim",
            "sessionId=abc.SEALED&sessionId[]=victim",
            "sessionId=abc.SEALED&sessionId%5B%5D=victim",
            "sessionId[0]=victim&sessionId=abc.SEALED",
            "session.id=victim&sessionId=abc.SEALED",
            "sessionId=abc.SEALED&sessionId=abc.SEALED",
            "sessionId=abc.SEALED;sessionId=victim",
            "sessionId=abc.SEALED&x=1;session_id=victim",
        ] {
            assert_eq!(
                open_query(twice, open),
                Err(Refused::Ambiguous(
                    "the query names a session more than once"
                )),
                "{twice}"
            );
        }
        for semicolon in ["sessionId=abc.SEALED;x=1", "x=1;sessionId=abc.SEALED"] {
            assert!(
                matches!(open_query(semicolon, open), Err(Refused::Ambiguous(m)) if m.contains("';'")),
                "{semicolon}"
            );
        }
    }
}

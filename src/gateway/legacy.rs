//! The 2024-11-05 HTTP+SSE transport's session: the `endpoint` event names where to POST, with
//! the session in the query (`?sessionId=…`, `?session_id=…` or `?sessionid=…`, as the TypeScript,
//! Python and Go SDKs spell it). Like `Mcp-Session-Id` (see [`super::sessions`]), the client is
//! given the id sealed for the subject that opened the stream, and every request carrying one
//! must present it sealed for its own subject: anyone else's, or the upstream's bare id, is 404.

use std::borrow::Cow;

use url::form_urlencoded;

/// Whether a query parameter (still percent-encoded) names a session, however it is spelt:
/// upstreams differ, and some read names loosely.
fn is_session_param(raw_name: &str) -> bool {
    let name: Cow<'_, str> = if raw_name.contains(['%', '+']) {
        form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map_or(Cow::Borrowed(""), |(n, _)| Cow::Owned(n.into_owned()))
    } else {
        Cow::Borrowed(raw_name)
    };
    let mut letters = name.chars().filter(|c| !matches!(c, '_' | '-'));
    "sessionid"
        .chars()
        .all(|w| letters.next().is_some_and(|c| c.eq_ignore_ascii_case(&w)))
        && letters.next().is_none()
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

/// The query to forward: a session parameter's sealed value opened by `open` (the upstream's
/// own id), the rest as it came. `Err` when one does not open for this caller.
pub fn open_query(query: &str, open: impl Fn(&str) -> Option<String>) -> Result<Cow<'_, str>, ()> {
    if !query
        .split('&')
        .any(|p| is_session_param(p.split('=').next().unwrap_or("")))
    {
        return Ok(Cow::Borrowed(query));
    }
    map_sessions(query, |sealed| open(sealed))
        .map(Cow::Owned)
        .ok_or(())
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

    #[test]
    fn every_spelling_of_a_session_parameter_is_sealed() {
        assert_eq!(seal_query("sessionId=abc", seal), "sessionId=abc.SEALED");
        assert_eq!(
            seal_query("x=1&session_id=a%2Bb+c&y", seal),
            "x=1&session_id=a%2Bb+c.SEALED&y"
        );
        for name in [
            "sessionid",
            "SESSIONID",
            "session-id",
            "session%5Fid",
            "sess%69onId",
        ] {
            assert_eq!(
                seal_query(&format!("{name}=1"), seal),
                format!("{name}=1.SEALED"),
                "{name}"
            );
        }
        for other in ["session=1", "sessionids=1", "id=1", ""] {
            assert_eq!(seal_query(other, seal), other);
        }
    }

    #[test]
    fn only_a_sealed_session_opens() {
        assert_eq!(open_query("", open), Ok("".into()));
        assert_eq!(open_query("a=1&b", open), Ok("a=1&b".into()));
        assert_eq!(
            open_query("sessionId=abc.SEALED&x=%20", open),
            Ok("sessionId=abc&x=%20".into())
        );
        assert_eq!(
            open_query("session_id=a%2Bb+c.SEALED", open),
            Ok("session_id=a%2Bb+c".into()),
            "encoded as it was sent"
        );
        for bad in [
            "sessionId=abc",
            "sessionId=",
            "sessionId",
            "sessionId=abc.SEALED&SESSIONID=victim",
            "x=1&session%5Fid=abc",
        ] {
            assert_eq!(open_query(bad, open), Err(()), "{bad}");
        }
    }
}

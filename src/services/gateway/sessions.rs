//! `Mcp-Session-Id` binding: a session belongs to the subject (and client) that opened it.
//!
//! The front door hands clients the upstream's session id sealed with a MAC over the server,
//! the token's owner and the id (`{id}.{tag}`), and opens it again on the way in: the upstream
//! only ever sees its own id, and a session presented by anyone else, or made up, is 404 as if
//! it did not exist. Nothing is kept per session, so there is no table to fill or to evict
//! from, and bindings outlive restarts (the key derives from the master key).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of the MAC kept in a sealed id (128 bits).
const TAG_BYTES: usize = 16;

pub struct SessionSeal {
    key: hmac::Key,
}

impl SessionSeal {
    pub fn new(key: hmac::Key) -> Self {
        Self { key }
    }

    fn tag(&self, server_id: &str, owner: &str, session: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [server_id, owner, session] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign()
    }

    /// The id the client gets for the upstream's `session`.
    pub fn seal(&self, server_id: &str, owner: &str, session: &str) -> String {
        let tag = self.tag(server_id, owner, session);
        format!(
            "{session}.{}",
            URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG_BYTES])
        )
    }

    /// The upstream's session id in `presented`, if this owner was given it for this server.
    pub fn open<'a>(&self, server_id: &str, owner: &str, presented: &'a str) -> Option<&'a str> {
        let (session, tag) = presented.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = self.tag(server_id, owner, session);
        (tag.len() == TAG_BYTES && crate::crypto::ct_eq(&tag, &expected.as_ref()[..TAG_BYTES]))
            .then_some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal() -> SessionSeal {
        SessionSeal::new(hmac::Key::new(hmac::HMAC_SHA256, b"test key"))
    }

    #[test]
    fn a_sealed_session_opens_only_for_its_owner_and_server() {
        let s = seal();
        let id = s.seal("srv_a", "alice|c", "upstream-1.2");
        assert_eq!(s.open("srv_a", "alice|c", &id), Some("upstream-1.2"));
        assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(s.open("srv_a", "mallory|c", &id), None);
        assert_eq!(s.open("srv_b", "alice|c", &id), None);
        assert_eq!(s.open("srv_a", "alice|c", "upstream-1.2"), None);
        assert_eq!(
            s.open("srv_a", "alice|c", "made-up.AAAAAAAAAAAAAAAAAAAAAA"),
            None
        );
        // The parts cannot be shifted into one another.
        let sealed = s.seal("srv_a", "alice|", "c");
        let (_, tag) = sealed.rsplit_once('.').expect("a tag");
        assert_eq!(s.open("srv_a", "alice", &format!("|c.{tag}")), None);
    }
}

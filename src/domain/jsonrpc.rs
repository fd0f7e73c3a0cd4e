//! The front door's reading of a request body: one JSON-RPC 2.0 message (request, notification
//! or response) or a batch of them, read strictly enough that no upstream can read it otherwise.
//!
//! The policy decides on `method` and `params.name`; the upstream acts on its own reading of the
//! same bytes. Decoders disagree on two things, and a body using either is refused (JSON-RPC
//! -32600 naming the key) rather than forwarded:
//!
//! - **Case variants.** Go's `encoding/json` matches object keys to struct fields under Unicode
//!   simple case folding (`Name`, `NAME` and `ſ`-for-`s` spellings all fill `name`), the last
//!   one winning. A key that is not exactly one of the protocol's keys but folds to one is
//!   refused, in every object the policy reads: the message, its `params`, its `error`.
//! - **Duplicate keys.** Python's `json` and JavaScript's `JSON.parse` keep the last; other
//!   decoders the first. A key twice in one of those objects is refused.
//!
//! Everything else must be JSON-RPC too (`jsonrpc: "2.0"`; a request's `method` a string and
//! `params` an object; a response with an `id` and one of `result` or `error`), every string
//! valid UTF-8 without lone surrogates, and nothing nested deeper than [`MAX_DEPTH`]. Valid
//! bodies are forwarded byte for byte (see ARCHITECTURE.md for why not re-serialised).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// How deep arrays and objects may nest in a body, the body itself being the first level (a
/// single message's `params.arguments` is the third).
pub const MAX_DEPTH: usize = 64;

/// One JSON-RPC message, only as much as the policy and the header checks need.
#[derive(Debug)]
pub struct Message<'a> {
    pub method: Option<Cow<'a, str>>,
    pub id: Option<&'a RawValue>,
    pub params: Option<Params<'a>>,
}

#[derive(Debug, Default)]
pub struct Params<'a> {
    pub name: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
}

/// Why a body is refused before it reaches the upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (JSON-RPC -32700).
    NotJson(String),
    /// JSON, but not a JSON-RPC message or batch of them, or one an upstream could read
    /// differently (-32600).
    NotJsonRpc(String),
}

impl ParseError {
    /// A short reason for the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "invalid_json",
            Self::NotJsonRpc(_) => "invalid_request",
        }
    }
}

/// The keys the protocol defines in a message, in its `params` (those MCP methods share:
/// what the policy and the header checks read, and what SDKs decode into fields), and in an
/// `error`.
const MESSAGE_KEYS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_KEYS: &[&str] = &["name", "arguments", "uri", "_meta", "cursor"];
const ERROR_KEYS: &[&str] = &["code", "message", "data"];

/// The messages in a request body.
pub fn parse(body: &[u8]) -> Result<Vec<Message<'_>>, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let messages = de
        .deserialize_any(BodyVisitor)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| classify(body, e))?;
    Ok(messages)
}

/// Syntax errors are -32700; anything we refused is -32600 — unless the rest of the body, which
/// the refusal left unread, is not JSON either.
fn classify(body: &[u8], e: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ParseError::NotJson(e.to_string()),
        Category::Data => match serde_json::from_slice::<de::IgnoredAny>(body) {
            Err(syntax) if !syntax.is_data() => ParseError::NotJson(syntax.to_string()),
            _ => ParseError::NotJsonRpc(e.to_string()),
        },
    }
}

/// Whether Go's `encoding/json` would fill the field `field` (ASCII) from the key `key`: equal
/// under Unicode simple case folding. The only characters outside ASCII that fold to an ASCII
/// letter are U+017F (ſ, to `s`) and U+212A (the Kelvin sign, to `k`) (CaseFolding.txt; a
/// test checks this against the Unicode data on the machine).
pub fn folds_to(key: &str, field: &str) -> bool {
    let mut chars = key.chars();
    for f in field.bytes() {
        let c = match chars.next() {
            Some('\u{017F}') => 's',
            Some('\u{212A}') => 'k',
            Some(c) if c.is_ascii() => c,
            _ => return false,
        };
        if !(c as u8).eq_ignore_ascii_case(&f) {
            return false;
        }
    }
    chars.next().is_none()
}

/// The keys of one object the policy reads: refuses case variants of `protocol` keys and
/// duplicates of any key.
struct Keys<'de> {
    protocol: &'static [&'static str],
    /// Few keys: a scan; many (a hostile body): a set, so no body costs quadratic time.
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    fn new(protocol: &'static [&'static str]) -> Self {
        Self {
            protocol,
            few: Vec::new(),
            many: HashSet::new(),
        }
    }

    #[expect(
        clippy::ptr_arg,
        reason = "a key borrowed from the body is kept borrowed (cloning the Cow, not the text)"
    )]
    fn admit<E: de::Error>(&mut self, key: &Cow<'de, str>) -> Result<(), E> {
        if !self.protocol.contains(&key.as_ref())
            && let Some(field) = self.protocol.iter().find(|f| folds_to(key, f))
        {
            return Err(E::custom(format_args!(
                "the key {key:?} is a case variant of {field:?}, which some decoders read instead"
            )));
        }
        let duplicate = if self.many.is_empty() && self.few.len() < 16 {
            let seen = self.few.contains(key);
            self.few.push(key.clone());
            seen
        } else {
            self.many.extend(self.few.drain(..));
            !self.many.insert(key.clone())
        };
        if duplicate {
            return Err(E::custom(format_args!(
                "the key {key:?} appears twice in one object"
            )));
        }
        Ok(())
    }
}

/// A string, borrowed from the body when it holds no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!(
        "the body nests arrays and objects deeper than {MAX_DEPTH} levels"
    ))
}

/// Reads a value the policy does not look at, checking its strings and its depth.
struct Skip {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let inner = self.depth + 1;
        while seq.next_element_seed(Skip { depth: inner })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let inner = self.depth + 1;
        while map.next_key_seed(Skip { depth: inner })?.is_some() {
            map.next_value_seed(Skip { depth: inner })?;
        }
        Ok(())
    }
}

/// The body: one message, or a non-empty batch of them.
struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Vec<Message<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object) or a batch of them (an array of objects)")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        MessageSeed { depth: 1 }.visit_map(map).map(|m| vec![m])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(m) = seq.next_element_seed(MessageSeed { depth: 2 })? {
            out.push(m);
        }
        if out.is_empty() {
            return Err(de::Error::custom(
                "an empty batch is not a JSON-RPC request",
            ));
        }
        Ok(out)
    }
}

/// One message, at `depth`.
struct MessageSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Message<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Message<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use de::Error;
        let inner = self.depth + 1;
        let mut keys = Keys::new(MESSAGE_KEYS);
        let mut version: Option<Cow<'de, str>> = None;
        let mut msg = Message {
            method: None,
            id: None,
            params: None,
        };
        let (mut result, mut error) = (false, false);
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            keys.admit(&key)?;
            match key.as_ref() {
                "jsonrpc" => version = Some(map.next_value::<Text<'de>>()?.0),
                "method" => msg.method = Some(map.next_value::<Text<'de>>()?.0),
                "id" => msg.id = Some(id(map.next_value::<&'de RawValue>()?)?),
                "params" => msg.params = Some(map.next_value_seed(ParamsSeed { depth: inner })?),
                "result" => {
                    map.next_value_seed(Skip { depth: inner })?;
                    result = true;
                }
                "error" => {
                    map.next_value_seed(ErrorSeed { depth: inner })?;
                    error = true;
                }
                _ => map.next_value_seed(Skip { depth: inner })?,
            }
        }
        if version.as_deref() != Some("2.0") {
            return Err(A::Error::custom(
                "a JSON-RPC message must have \"jsonrpc\": \"2.0\"",
            ));
        }
        let null_id = msg.id.is_some_and(|i| i.get() == "null");
        match (&msg.method, result, error) {
            (Some(_), false, false) if !null_id => Ok(msg),
            (Some(_), false, false) => Err(A::Error::custom(
                "a request's id must be a string or a number",
            )),
            (Some(_), _, _) => Err(A::Error::custom(
                "a message with a method is a request and has no result or error",
            )),
            (None, true, false) if msg.id.is_some() && !null_id => Ok(msg),
            (None, false, true) if msg.id.is_some() => Ok(msg),
            (None, true, true) => Err(A::Error::custom(
                "a response has a result or an error, not both",
            )),
            (None, false, false) => Err(A::Error::custom(
                "a JSON-RPC message has a method (a request or notification) or a result or an error (a response)",
            )),
            (None, _, _) => Err(A::Error::custom(
                "a response must carry the id of the request it answers",
            )),
        }
    }
}

/// An `id`: a string, a number or (in an error response) null.
fn id<E: de::Error>(raw: &RawValue) -> Result<&RawValue, E> {
    let text = raw.get();
    let ok = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Text<'_>>(text).is_ok(),
        Some(b'-' | b'0'..=b'9') => true,
        _ => text == "null",
    };
    if ok {
        Ok(raw)
    } else {
        Err(E::custom("an id must be a string or a number"))
    }
}

/// A message's `params`: an object.
struct ParamsSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Params<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed {
    type Value = Params<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inner = self.depth + 1;
        let mut keys = Keys::new(PARAMS_KEYS);
        let mut params = Params::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            keys.admit(&key)?;
            match key.as_ref() {
                "name" => params.name = Some(map.next_value::<Text<'de>>()?.0),
                "uri" => params.uri = Some(map.next_value::<Text<'de>>()?.0),
                _ => map.next_value_seed(Skip { depth: inner })?,
            }
        }
        Ok(params)
    }
}

/// A response's `error`: `{code, message, data?}`.
struct ErrorSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ErrorSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error object with an integer code and a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.depth + 1;
        let mut keys = Keys::new(ERROR_KEYS);
        let (mut code, mut message) = (false, false);
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            keys.admit(&key)?;
            match key.as_ref() {
                "code" => {
                    map.next_value::<i64>()?;
                    code = true;
                }
                "message" => {
                    map.next_value::<Text<'de>>()?;
                    message = true;
                }
                _ => map.next_value_seed(Skip { depth: inner })?,
            }
        }
        if code && message {
            Ok(())
        } else {
            Err(de::Error::custom(
                "an error object must have an integer code and a message",
            ))
        }
    }
}

#[cfg(test)]
mod tests;

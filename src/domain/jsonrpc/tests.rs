//! The strict reader against decoders with other rules: a model of Go's `encoding/json` (keys
//! matched to fields under Unicode simple case folding, the last match winning) and of
//! Python's `json` and JavaScript's `JSON.parse` (exact keys, the last duplicate winning).
//! `tests/api/gateway/confusion.rs` runs python3 and node themselves on forwarded bodies.

use std::process::Command;

use super::*;

fn refused(body: &str) -> String {
    match parse(body.as_bytes()) {
        Err(ParseError::NotJsonRpc(m)) => m,
        other => panic!("{body}: expected -32600, got {other:?}"),
    }
}

#[test]
fn messages_of_every_kind_are_read() {
    let m = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get","arguments":{"a":[1,{"b":null}]},"_meta":{}}}"#)
        .expect("a request");
    assert_eq!(m[0].method.as_deref(), Some("tools/call"));
    assert_eq!(m[0].id.map(RawValue::get), Some("7"));
    assert_eq!(
        m[0].params.as_ref().and_then(|p| p.name.as_deref()),
        Some("get")
    );
    // Escapes are read as every decoder reads them.
    let m = parse(br#"{"jsonrpc":"2.0","id":"a","method":"resources\/read","params":{"n\u0061me":"x\u00e9","uri":"file:///a"}}"#)
        .expect("escaped");
    assert_eq!(m[0].method.as_deref(), Some("resources/read"));
    let p = m[0].params.as_ref().expect("params");
    assert_eq!(
        (p.name.as_deref(), p.uri.as_deref()),
        (Some("x\u{e9}"), Some("file:///a"))
    );
    for ok in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"x","result":null}"#,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no","data":[1]}}"#,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#,
        // Keys Go does not match to a field: the dotless ı and dotted İ fold to no ASCII
        // letter; nor does the Cyrillic а.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","\u0131d":2,"\u0130D":3,"p\u0430rams":{}}"#,
        // Other keys may differ only in case: no reader of the policy's keys looks at them.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","foo":1,"FOO":2}"#,
    ] {
        assert!(
            parse(ok.as_bytes()).is_ok(),
            "{ok}: {:?}",
            parse(ok.as_bytes())
        );
    }
}

#[test]
fn case_variants_of_the_protocols_keys_are_refused_wherever_the_policy_reads() {
    for (body, key) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_thing","Name":"nuke"}}"#,
            "Name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"nuke"}}"#,
            "NAME",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#,
            "Method",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"METHOD":"tools/call"}"#,
            "METHOD",
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"param\u{17f}\":{\"name\":\"nuke\"}}",
            "param\u{17f}",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","param\u017f":{"name":"nuke"}}"#,
            "param\u{17f}",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Arguments":{}}}"#,
            "Arguments",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///etc"}}"#,
            "URI",
        ),
        (r#"{"jsonrpc":"2.0","ID":1,"result":{}}"#, "ID"),
        (
            r#"{"JSONRPC":"2.0","jsonrpc":"2.0","id":1,"result":{}}"#,
            "JSONRPC",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"a","Message":"b"}}"#,
            "Message",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_thing","nAme":"nuke"}}]"#,
            "nAme",
        ),
    ] {
        let why = refused(body);
        assert!(
            why.contains(&format!("{key:?}")) && why.contains("case variant"),
            "{body}: {why}"
        );
    }
}

#[test]
fn duplicate_keys_are_refused() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"x":2}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"a","method":"b"}]"#,
        // Spelt differently, read the same.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","meth\u006fd":"tools/call"}"#,
    ] {
        assert!(refused(body).contains("appears twice"), "{body}");
    }
    // Many keys cost a set, not a scan per key.
    let mut many: String = (0..50_000).map(|i| format!("\"k{i}\":0,")).collect();
    many.push_str("\"k7\":1");
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{{many}}}}}"#);
    let start = std::time::Instant::now();
    assert!(refused(&body).contains("\"k7\" appears twice"));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn what_is_not_json_rpc_is_refused() {
    for (body, says) in [
        ("42", "JSON-RPC message"),
        ("\"ping\"", "JSON-RPC message"),
        ("[]", "empty batch"),
        ("[1]", "JSON-RPC message"),
        ("[[]]", "JSON-RPC message"),
        ("{}", "jsonrpc"),
        (r#"{"jsonrpc":"2.0","id":1}"#, "has a method"),
        (r#"{"id":1,"method":"ping"}"#, "jsonrpc"),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "jsonrpc"),
        (r#"{"jsonrpc":2,"id":1,"method":"ping"}"#, "string"),
        (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, "string"),
        (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":"\udfff","method":"ping"}"#, "id"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
            "object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}"#,
            "object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            "string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            "no result",
        ),
        (r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#, ""),
        (r#"{"jsonrpc":"2.0","result":{}}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":null,"result":{}}"#, "id"),
        (r#"{"jsonrpc":"2.0","id":1,"error":"bad"}"#, "error object"),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
            "i64",
        ),
        (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#, "message"),
    ] {
        let why = refused(body);
        assert!(why.contains(says), "{body}: {why}");
    }
}

#[test]
fn what_is_not_json_is_a_parse_error() {
    for body in [
        &b""[..],
        b"   ",
        b"not json",
        b"{\"jsonrpc\":\"2.0\"",
        &[0xff, 0xfe],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} {}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",}",
        // Invalid UTF-8 and lone surrogates, even where the policy does not look (Go reads
        // them as U+FFFD, Python keeps the surrogate).
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"arguments\":{\"a\":\"\xff\"}}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"arguments\":{\"a\":\"\\ud800\"}}}",
        // Refused for its shape first, but not JSON after all.
        b"{\"jsonrpc\":\"2.0\",\"Method\":1, oops",
    ] {
        assert!(
            matches!(parse(body), Err(ParseError::NotJson(_))),
            "{}: {:?}",
            String::from_utf8_lossy(body),
            parse(body)
        );
    }
}

#[test]
fn nesting_is_bounded_for_the_whole_body() {
    let nest = |levels: usize| {
        // The message is level 1, params 2, arguments 3: `levels` in all.
        let inner = levels - 3;
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}{}}}}}"#,
            "{\"a\":".repeat(inner) + "{",
            "}".repeat(inner + 1)
        )
    };
    assert!(parse(nest(MAX_DEPTH).as_bytes()).is_ok());
    assert!(refused(&nest(MAX_DEPTH + 1)).contains("deeper than 64"));
    let arrays = format!(
        r#"[{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}]"#,
        "[".repeat(MAX_DEPTH - 2),
        "]".repeat(MAX_DEPTH - 2)
    );
    assert!(
        refused(&arrays).contains("deeper"),
        "a batch is a level too"
    );
    // The issue's case: deep enough to crash an upstream, in a body that is not JSON-RPC.
    let deep = format!(
        "{}{}",
        "{\"a\":".repeat(100_000),
        "1".to_owned() + &"}".repeat(100_000)
    );
    assert!(matches!(
        parse(deep.as_bytes()),
        Err(ParseError::NotJsonRpc(_))
    ));
    let deep_in_result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(deep_in_result.as_bytes()).is_err());
    // Not JSON and deep: still -32700.
    assert!(matches!(
        parse("[".repeat(100_000).as_bytes()),
        Err(ParseError::NotJson(_))
    ));
}

#[test]
fn only_the_long_s_and_the_kelvin_sign_fold_into_ascii() {
    assert!(folds_to("NaMe", "name"));
    assert!(folds_to("param\u{17f}", "params"));
    assert!(folds_to("PARAM\u{17f}", "params"));
    assert!(folds_to("\u{212a}ey", "key"));
    assert!(!folds_to("\u{131}d", "id"), "dotless i");
    assert!(!folds_to("\u{130}d", "id"), "dotted I");
    assert!(!folds_to("n\u{430}me", "name"), "Cyrillic a");
    assert!(!folds_to("nam", "name"));
    assert!(!folds_to("names", "name"));
    assert!(!folds_to("_META", "-meta"));
    assert!(folds_to("_META", "_meta"));
}

/// The claim in [`folds_to`], checked against the Unicode data of the tools on this machine:
/// Python's case folding (`str.casefold`, which includes every simple mapping that is not
/// overridden by a full one) and Perl's `Unicode::UCD` (the simple mappings themselves).
#[test]
fn the_unicode_data_here_agrees_that_only_two_characters_fold_into_ascii() {
    let python = Command::new("python3")
        .args([
            "-c",
            "print(' '.join('%04X' % c for c in range(0x80, 0x110000) \
             if not 0xD800 <= c < 0xE000 and len(chr(c).casefold()) == 1 \
             and chr(c).casefold().isascii()))",
        ])
        .output();
    match python {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "017F 212A");
        }
        other => println!("python3 is not available here ({other:?}); its check did not run"),
    }
    let perl = Command::new("perl")
        .args([
            "-MUnicode::UCD=all_casefolds",
            "-e",
            "my $h = all_casefolds(); print join(' ', map { sprintf '%04X', $_ } sort { $a <=> $b } \
             grep { $_ >= 0x80 && $h->{$_}{simple} ne '' && hex($h->{$_}{simple}) < 0x80 } keys %$h)",
        ])
        .output();
    match perl {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "017F 212A");
        }
        other => {
            println!("perl's Unicode::UCD is not available here ({other:?}); its check did not run")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The property: whatever the reader accepts, other decoders read the same method, tool name
// and URI.
// ---------------------------------------------------------------------------------------------

/// Go's simple case folding orbits of the characters the generator uses besides ASCII letters
/// (whose orbit is their two cases), from CaseFolding.txt; a test checks them against Perl's
/// `Unicode::UCD`.
const ORBITS: &[&[char]] = &[
    &['K', 'k', '\u{212A}'],
    &['S', 's', '\u{17F}'],
    &['\u{130}'],
    &['\u{131}'],
    &['\u{405}', '\u{455}'],
    &['\u{410}', '\u{430}'],
    &['\u{FF2E}', '\u{FF4E}'],
    &['\u{DF}', '\u{1E9E}'],
    &['\u{3A3}', '\u{3C2}', '\u{3C3}'],
];

/// Go's `foldRune`: the smallest character of the orbit.
fn go_fold_char(c: char) -> char {
    if let Some(orbit) = ORBITS.iter().find(|o| o.contains(&c)) {
        return orbit.iter().copied().min().unwrap_or(c);
    }
    if c.is_ascii_alphabetic() {
        return c.to_ascii_uppercase();
    }
    assert!(
        c.is_ascii() || c == '\u{200B}',
        "the model knows no orbit for {c:?}"
    );
    c
}

fn go_fold(s: &str) -> String {
    s.chars().map(go_fold_char).collect()
}

#[test]
fn the_go_folding_model_matches_the_unicode_data() {
    let chars: Vec<char> = ORBITS.iter().flat_map(|o| o.iter().copied()).collect();
    let list: Vec<String> = chars.iter().map(|c| format!("{:X}", *c as u32)).collect();
    let out = Command::new("perl")
        .args([
            "-MUnicode::UCD=casefold",
            "-e",
            "for (@ARGV) { my $c = hex $_; my $e = casefold($c); \
             my $s = ($e && $e->{simple} ne '') ? hex($e->{simple}) : $c; printf \"%X\\n\", $s }",
        ])
        .args(&list)
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        println!("perl's Unicode::UCD is not available here; the model's table is unchecked");
        return;
    };
    let simple: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| u32::from_str_radix(l.trim(), 16).expect("hex"))
        .collect();
    assert_eq!(simple.len(), chars.len());
    for (i, a) in chars.iter().enumerate() {
        for (j, b) in chars.iter().enumerate() {
            assert_eq!(
                simple[i] == simple[j],
                go_fold_char(*a) == go_fold_char(*b),
                "{a:?} and {b:?}"
            );
        }
    }
}

/// An object's members in order, duplicates kept (what a streaming decoder sees).
struct Pairs(Vec<(String, Box<RawValue>)>);

impl<'de> de::Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    v.push((k, map.next_value()?));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// What Go's `encoding/json` puts in the struct field `field`: the last member whose key folds
/// to it.
fn go_field<'a>(pairs: &'a [(String, Box<RawValue>)], field: &str) -> Option<&'a RawValue> {
    let want = go_fold(field);
    pairs
        .iter()
        .rev()
        .find(|(k, _)| go_fold(k) == want)
        .map(|(_, v)| &**v)
}

/// Method, tool name and URI of each message, as a Go server reads them.
fn go_read(body: &str) -> Vec<[Option<String>; 3]> {
    let members = |raw: &RawValue| -> Vec<(String, Box<RawValue>)> {
        serde_json::from_str::<Pairs>(raw.get())
            .map(|p| p.0)
            .unwrap_or_default()
    };
    let text = |v: Option<&RawValue>| v.and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    raw_messages(body)
        .iter()
        .map(|raw| {
            let top = members(raw);
            let params = go_field(&top, "params").map(members).unwrap_or_default();
            [
                text(go_field(&top, "method")),
                text(go_field(&params, "name")),
                text(go_field(&params, "uri")),
            ]
        })
        .collect()
}

/// The messages of a body as raw text (duplicates inside them intact).
fn raw_messages(body: &str) -> Vec<Box<RawValue>> {
    if body.trim_start().starts_with('[') {
        serde_json::from_str(body).expect("batch")
    } else {
        vec![RawValue::from_string(body.to_owned()).expect("raw")]
    }
}

/// Method, tool name and URI of each message, as Python's `json` and `JSON.parse` read them
/// (exact keys; `serde_json::Value` keeps the last duplicate as they do).
fn last_wins_read(body: &str) -> Vec<[Option<String>; 3]> {
    let messages: Vec<serde_json::Value> = match serde_json::from_str(body).expect("json") {
        serde_json::Value::Array(a) => a,
        one => vec![one],
    };
    messages
        .iter()
        .map(|m| {
            let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
            [
                text(&m["method"]),
                text(&m["params"]["name"]),
                text(&m["params"]["uri"]),
            ]
        })
        .collect()
}

/// xorshift64*: deterministic, so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// `key` spelt at random: cases swapped, letters replaced by characters that fold to them in
/// Go, or by look-alikes that do not.
fn spell(rng: &mut Rng, key: &str) -> String {
    if !rng.chance(4) {
        return key.to_owned();
    }
    key.chars()
        .map(|c| match rng.below(12) {
            0 | 1 => c.to_ascii_uppercase(),
            2 => match c {
                's' => '\u{17F}',
                'k' => '\u{212A}',
                'i' => *rng.pick(&['\u{131}', '\u{130}']),
                'a' => '\u{430}',
                'n' => '\u{FF4E}',
                _ => c,
            },
            3 if c == 's' => *rng.pick(&['\u{455}', '\u{3C2}', '\u{DF}', '\u{1E9E}']),
            _ => c,
        })
        .collect()
}

fn string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn object(rng: &mut Rng, keys: &[&str], value: &mut dyn FnMut(&mut Rng, &str) -> String) -> String {
    let mut members = Vec::new();
    for key in keys {
        if rng.chance(12) {
            continue;
        }
        for _ in 0..1 + usize::from(rng.chance(8)) {
            members.push(format!("{}:{}", string(&spell(rng, key)), value(rng, key)));
        }
    }
    if rng.chance(4) {
        let extra = *rng.pick(&["x", "nam", "names", "\u{200B}name", "Foo"]);
        members.push(format!("{}:1", string(extra)));
    }
    // Shuffle.
    for i in (1..members.len()).rev() {
        let j = rng.below(i + 1);
        members.swap(i, j);
    }
    format!("{{{}}}", members.join(","))
}

fn message(rng: &mut Rng) -> String {
    object(
        rng,
        &["jsonrpc", "id", "method", "params"],
        &mut |rng, key| match key {
            "jsonrpc" => string("2.0"),
            "id" => rng.below(100).to_string(),
            "method" => string(rng.pick::<&str>(&["tools/call", "ping", "resources/read"])),
            _ => object(
                rng,
                &["name", "uri", "arguments"],
                &mut |rng, key| match key {
                    "name" => string(rng.pick::<&str>(&["read_thing", "nuke"])),
                    "uri" => string(rng.pick::<&str>(&["file:///a", "file:///etc/shadow"])),
                    _ => "{}".to_owned(),
                },
            ),
        },
    )
}

#[test]
fn nothing_the_reader_accepts_is_read_differently_by_other_decoders() {
    let mut rng = Rng(0x5EED_0018_0000_0001);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..20_000 {
        let body = if rng.chance(4) {
            let n = 1 + rng.below(3);
            format!(
                "[{}]",
                (0..n)
                    .map(|_| message(&mut rng))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            message(&mut rng)
        };
        let Ok(messages) = parse(body.as_bytes()) else {
            refused += 1;
            continue;
        };
        accepted += 1;
        let ours: Vec<[Option<String>; 3]> = messages
            .iter()
            .map(|m| {
                let p = m.params.as_ref();
                [
                    m.method.as_deref().map(str::to_owned),
                    p.and_then(|p| p.name.as_deref()).map(str::to_owned),
                    p.and_then(|p| p.uri.as_deref()).map(str::to_owned),
                ]
            })
            .collect();
        assert_eq!(ours, go_read(&body), "case {case}, Go: {body}");
        assert_eq!(
            ours,
            last_wins_read(&body),
            "case {case}, last wins: {body}"
        );
    }
    // The generator reaches both sides of the line.
    assert!(
        accepted > 1_000 && refused > 1_000,
        "{accepted} accepted, {refused} refused"
    );
}

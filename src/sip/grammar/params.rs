//! Parameter lists (`;name[=value]...`) after a URI or a header value, and the quoted strings
//! their values (and display names) may be.

use super::{err, is_lws, is_token_char, GrammarError};

/// A parameter list `;name[=value]...` as found after a URI or a header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of a parameter that has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Parses `;a=b ; c ; d = "quoted"` (leading `;` required for each item, LWS allowed around `;`/`=`).
pub fn parse_params(mut s: &str) -> Result<Params, GrammarError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(is_lws);
        if s.is_empty() {
            return Ok(Params(out));
        }
        let Some(rest) = s.strip_prefix(';') else {
            return err("parameter list");
        };
        s = rest.trim_start_matches(is_lws);
        let name_end = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() {
            return err("parameter (empty)");
        }
        s = s[name_end..].trim_start_matches(is_lws);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = rest.trim_start_matches(is_lws);
            if rest.starts_with('"') {
                let (q, after) = take_quoted(rest)?;
                s = after;
                Some(q)
            } else {
                // gen-value = token / host / quoted-string; IPv6 references carry ':' '[' ']'
                let end = rest
                    .find(|c: char| !(is_token_char(c) || c == ':' || c == '[' || c == ']'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return err("parameter value");
                }
                s = &rest[end..];
                Some(rest[..end].to_string())
            }
        } else {
            None
        };
        out.push((name.to_string(), value));
    }
}

/// Takes a quoted-string from the start of `s` (which begins with `"`), returning the unescaped
/// content and the remainder after the closing quote.
pub(super) fn take_quoted(s: &str) -> Result<(String, &str), GrammarError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            '\r' | '\n' => break,
            c => out.push(c),
        }
    }
    err("quoted string (unbalanced quote)")
}

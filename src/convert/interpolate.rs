//! Compose variable interpolation in string values: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a
//! literal `$`. Defaults and alternatives may nest (`${A:-${B:-x}}`) and are expanded only when
//! used. Pure: the variables come in as a map; reading `.env` and the process is `mod.rs`' job.

use std::collections::BTreeMap;

/// The result of interpolating one string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Interpolated {
    /// The string with every reference replaced.
    pub value: String,
    /// Variables that were referenced without a default and are not set (they became `""`,
    /// as Compose does after its "variable is not set" warning).
    pub unset: Vec<String>,
}

/// Expands the references in `input` with `vars`. Errors: a malformed reference, or a
/// `${VAR:?message}` / `${VAR?message}` whose variable is missing (the message says which).
pub fn interpolate(input: &str, vars: &BTreeMap<String, String>) -> Result<Interpolated, String> {
    let mut out = Interpolated::default();
    expand(input, vars, &mut out, 0)?;
    Ok(out)
}

/// Deepest nesting of `${...}` inside defaults: far beyond real files, bounds recursion.
const MAX_NESTING: usize = 16;

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn invalid(input: &str) -> String {
    format!(
        "invalid interpolation format in {input:?}; write $$ for a literal $, or ${{VAR}}, ${{VAR:-default}}"
    )
}

fn expand(
    input: &str,
    vars: &BTreeMap<String, String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_NESTING {
        return Err(format!("interpolation nested too deeply in {input:?}"));
    }
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.value.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = &after[1..];
                let end = matching_brace(body_start).ok_or_else(|| invalid(input))?;
                braced(&body_start[..end], input, vars, out, depth)?;
                rest = &body_start[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..len];
                lookup(name, vars, out);
                rest = &after[len..];
            }
            _ => return Err(invalid(input)),
        }
    }
    out.value.push_str(rest);
    Ok(())
}

/// Index of the `}` closing a `${` whose body starts at `s`, skipping nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup(name: &str, vars: &BTreeMap<String, String>, out: &mut Interpolated) {
    match vars.get(name) {
        Some(v) => out.value.push_str(v),
        None => {
            if !out.unset.iter().any(|u| u == name) {
                out.unset.push(name.to_string());
            }
        }
    }
}

/// One `${...}` body: `NAME` optionally followed by an operator and a word.
fn braced(
    body: &str,
    input: &str,
    vars: &BTreeMap<String, String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), String> {
    let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(is_name_start) {
        return Err(invalid(input));
    }
    let op_and_word = &body[name_len..];
    if op_and_word.is_empty() {
        lookup(name, vars, out);
        return Ok(());
    }
    let (op, word) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| op_and_word.strip_prefix(op).map(|w| (*op, w)))
        .ok_or_else(|| invalid(input))?;
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    // `:` operators treat an empty value like an unset one.
    let present = if op.starts_with(':') { non_empty } else { set };
    match op.trim_start_matches(':') {
        "-" => {
            if present {
                out.value
                    .push_str(value.map(String::as_str).unwrap_or_default());
            } else {
                expand(word, vars, out, depth + 1)?;
            }
        }
        "+" => {
            if present {
                expand(word, vars, out, depth + 1)?;
            }
        }
        _ => {
            // "?"
            if present {
                out.value
                    .push_str(value.map(String::as_str).unwrap_or_default());
            } else {
                let mut message = Interpolated::default();
                expand(word, vars, &mut message, depth + 1)?;
                let detail = if message.value.is_empty() {
                    String::new()
                } else {
                    format!(": {}", message.value)
                };
                let how = if op.starts_with(':') {
                    "is not set or empty"
                } else {
                    "is not set"
                };
                return Err(format!("required variable {name} {how}{detail}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "a"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(input: &str) -> String {
        interpolate(input, &vars()).unwrap().value
    }

    #[test]
    fn forms() {
        assert_eq!(ok("plain"), "plain");
        assert_eq!(ok("$A-${A}x"), "a-ax");
        assert_eq!(ok("$$A $$"), "$A $");
        assert_eq!(ok("${PORT}:80"), "8080:80");
        assert_eq!(ok("${MISSING:-def}"), "def");
        assert_eq!(ok("${EMPTY:-def}"), "def");
        assert_eq!(ok("${EMPTY-def}"), "");
        assert_eq!(ok("${MISSING-def}"), "def");
        assert_eq!(
            ok("${A:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${MISSING+alt}"),
            "alt||alt|"
        );
        assert_eq!(ok("${MISSING:-${A}-${MISSING2:-z}}"), "a-z");
        assert_eq!(ok("${A:?boom}"), "a");
        assert_eq!(ok("${A:-}"), "a");
        assert_eq!(ok("x${MISSING:-a}}"), "xa}");
    }

    #[test]
    fn unset_variables_are_reported_once() {
        let r = interpolate("$NOPE ${NOPE} ${A:-$ALSO}", &vars()).unwrap();
        assert_eq!(r.value, "  a");
        assert_eq!(r.unset, vec!["NOPE".to_string()]);
        let r = interpolate("${NOPE:-$ALSO}", &vars()).unwrap();
        assert_eq!(r.unset, vec!["ALSO".to_string()]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            interpolate("${MISSING:?set MISSING to the db url}", &vars()),
            Err("required variable MISSING is not set or empty: set MISSING to the db url".into())
        );
        assert_eq!(
            interpolate("${EMPTY?x}", &vars()).map(|r| r.value),
            Ok(String::new())
        );
        assert!(interpolate("${MISSING?}", &vars())
            .unwrap_err()
            .starts_with("required variable MISSING is not set"));
        for bad in ["5$", "$1", "${", "${A", "${}", "${1A}", "${A!x}", "$-"] {
            assert!(interpolate(bad, &vars()).is_err(), "{bad}");
        }
    }
}

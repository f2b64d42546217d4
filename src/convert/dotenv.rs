//! Env files (`.env` next to the Compose file, and each service's `env_file`): `KEY=VALUE`
//! lines as Compose reads them. Pure: the caller reads the file and passes the variables
//! references expand with.
//!
//! The format (the common subset of Compose v2 and python-dotenv): blank lines and `#` lines
//! are skipped; `export ` before a key is allowed; `'single quoted'` values are literal;
//! `"double quoted"` values take `\n \t \\ \" \$` escapes and are interpolated; unquoted values
//! are trimmed, end at ` #` (an inline comment) and are interpolated. A bare `KEY` (no `=`)
//! means "pass `KEY` through from the environment" and yields `None`.

use std::collections::BTreeMap;

use super::interpolate::interpolate;

/// One `KEY[=VALUE]` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// The variable name.
    pub name: String,
    /// Its value, or `None` for a bare `KEY`.
    pub value: Option<String>,
    /// Variables referenced in the value that are not set.
    pub unset: Vec<String>,
}

/// Parses an env file. Values may reference `vars` and the lines above them. Errors name the
/// 1-based line.
pub fn parse_env_file(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<EnvLine>, (usize, String)> {
    let mut scope = vars.clone();
    let mut out = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value)),
            None => (line, None),
        };
        if !valid_name(name) {
            return Err((
                line_no,
                format!("{name:?} is not a variable name (letters, digits, '_', '.' and '-', not starting with a digit)"),
            ));
        }
        let (value, unset) = match value {
            None => (None, Vec::new()),
            Some(v) => {
                let (v, unset) = parse_value(v, &scope).map_err(|m| (line_no, m))?;
                (Some(v), unset)
            }
        };
        if let Some(v) = &value {
            scope.insert(name.to_string(), v.clone());
        }
        out.push(EnvLine {
            line: line_no,
            name: name.to_string(),
            value,
            unset,
        });
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// One value after `=`: `(value, unset variables)`.
fn parse_value(
    raw: &str,
    vars: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), String> {
    let v = raw.trim();
    if let Some(body) = v.strip_prefix('\'') {
        let end = body.find('\'').ok_or("unterminated single-quoted value")?;
        check_trailer(&body[end + 1..])?;
        return Ok((body[..end].to_string(), Vec::new()));
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut unescaped = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i);
                    break;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => unescaped.push('\n'),
                    Some('t') => unescaped.push('\t'),
                    Some('r') => unescaped.push('\r'),
                    // `\$` is a literal dollar: keep it escaped for interpolation.
                    Some('$') => unescaped.push_str("$$"),
                    Some(other @ ('"' | '\\')) => unescaped.push(other),
                    Some(other) => {
                        unescaped.push('\\');
                        unescaped.push(other);
                    }
                    None => unescaped.push('\\'),
                },
                c => unescaped.push(c),
            }
        }
        let end = end.ok_or("unterminated double-quoted value")?;
        check_trailer(&body[end + 1..])?;
        let r = interpolate(&unescaped, vars)?;
        return Ok((r.value, r.unset));
    }
    // Unquoted: an inline comment starts at whitespace followed by '#'.
    let value = match v.find(" #").or_else(|| v.find("\t#")) {
        Some(pos) => v[..pos].trim_end(),
        None => v,
    };
    let r = interpolate(value, vars)?;
    Ok((r.value, r.unset))
}

/// Only whitespace or a comment may follow a closing quote.
fn check_trailer(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {rest:?} after the closing quote"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, Option<String>)> {
        let vars = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        parse_env_file(text, &vars)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }

    #[test]
    fn lines() {
        let text = "\u{feff}# comment\n\nA=1\nexport B = two words  # note\nC='lit $HOME # x'\nD=\"q\\\"uote\\n$HOME\\$\"\nE=\nF\nG=${A}-$B\nH=a#b\nexported=1\n";
        assert_eq!(
            parse(text),
            vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "lit $HOME # x"),
                pair("D", "q\"uote\n/root$"),
                pair("E", ""),
                ("F".to_string(), None),
                pair("G", "1-two words"),
                pair("H", "a#b"),
                pair("exported", "1"),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let vars = BTreeMap::new();
        assert_eq!(parse_env_file("A=1\n=x\n", &vars).unwrap_err().0, 2);
        assert_eq!(parse_env_file("1A=x\n", &vars).unwrap_err().0, 1);
        assert_eq!(parse_env_file("A='x\n", &vars).unwrap_err().0, 1);
        assert_eq!(parse_env_file("A=\"x\" y\n", &vars).unwrap_err().0, 1);
        assert_eq!(parse_env_file("A=${B:?need B}\n", &vars).unwrap_err().0, 1);
        let unset = parse_env_file("A=$NOPE\n", &vars).unwrap();
        assert_eq!(unset[0].unset, vec!["NOPE".to_string()]);
    }
}

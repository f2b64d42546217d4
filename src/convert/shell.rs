//! Splits the string form of `command`, `entrypoint` and healthcheck `test` into words the way
//! Compose does (POSIX shell quoting, no expansion): whitespace separates words, `'...'` is
//! literal, `"..."` honours `\"`, `\\`, `\$` and `` \` ``, a backslash outside quotes escapes the
//! next character. No globbing, variables or comments: Compose passes no shell either.

/// The words of `input`, or a message for an unterminated quote or trailing backslash.
pub fn split(input: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Distinguishes "no word yet" from an empty quoted word (`''`).
    let mut in_word = false;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated single quote in {input:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {input:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated double quote in {input:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(format!("trailing backslash in {input:?}")),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn words() {
        assert_eq!(ok("httpd -f -p 8080"), ["httpd", "-f", "-p", "8080"]);
        assert_eq!(ok("  a\t b\n"), ["a", "b"]);
        assert_eq!(
            ok(r#"sh -c 'echo "hi there" $HOME'"#),
            ["sh", "-c", r#"echo "hi there" $HOME"#]
        );
        assert_eq!(ok(r#"echo "a \"b\" \$c \n""#), ["echo", r#"a "b" $c \n"#]);
        assert_eq!(ok(r"a\ b c\\d"), ["a b", r"c\d"]);
        assert_eq!(ok("'' x\"\"y"), ["", "xy"]);
        assert_eq!(ok("a'b'\"c\"d"), ["abcd"]);
        assert!(ok("").is_empty());
        assert!(ok("   ").is_empty());
    }

    #[test]
    fn errors() {
        assert!(split("echo 'x").is_err());
        assert!(split("echo \"x").is_err());
        assert!(split("echo x\\").is_err());
    }
}

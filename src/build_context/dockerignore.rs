//! `.dockerignore` with Docker's own rules, so the context dockwright sends (and hashes) is the
//! one `docker build` would send. Follows moby's `dockerignore.ReadAll` (comments, trimming,
//! `Clean`, leading `/` dropped) and `patternmatcher` (patterns compiled to anchored regular
//! expressions; a pattern also matches when it matches a parent directory; the last matching
//! pattern decides; `!` re-includes).
//!
//! Written here rather than taken from a crate: the gitignore crates differ from Docker on
//! exactly the cases that matter (unanchored names, parent matching, `**` at the start).

use regex::Regex;

/// One compiled pattern.
#[derive(Clone, Debug)]
struct Pattern {
    /// The cleaned pattern text (without `!`).
    text: String,
    /// A `!` exception (re-includes what earlier patterns excluded).
    exception: bool,
    regex: Regex,
}

/// Why a `.dockerignore` cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PatternError {
    /// 1-based line in the file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The exclusion rules of one build context. Built once per load, read by the context walk.
#[derive(Clone, Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            // Comments are recognised before trimming, as Docker does.
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(PatternError {
                        line,
                        message: "illegal exclusion pattern \"!\"".into(),
                    });
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let regex = compile(&cleaned).map_err(|message| PatternError { line, message })?;
            patterns.push(Pattern {
                text: cleaned,
                exception,
                regex,
            });
        }
        Ok(Self { patterns })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated, no leading `./`) is excluded.
    ///
    /// Each pattern is tried against the path and, failing that, against each of its parent
    /// directories; the last pattern that matches decides (moby's `MatchesOrParentMatches`).
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rfind('/') {
            Some(end) => path[..end].split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could flip the current answer needs evaluating.
            if pattern.exception != excluded {
                continue;
            }
            let mut matched = pattern.regex.is_match(path);
            if !matched {
                let mut prefix = String::new();
                for dir in &parents {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if pattern.regex.is_match(&prefix) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked because an exception might
    /// re-include something below it (moby's archive walk: any `!` pattern whose text starts
    /// with `dir/`). Without exceptions an excluded directory is skipped whole.
    pub fn must_descend(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exception && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: collapse `//`, drop `.`, resolve `..`.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// patternmatcher's translation of a pattern into an anchored regular expression: `*` is any
/// run of non-`/`, `?` one non-`/`, `**` any number of directories (`**/` eats its `/`; `**`
/// at the end matches everything), `[...]` classes pass through, `\` escapes.
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' => {
                    re.push('\\');
                    if let Some(&next) = chars.get(i) {
                        re.push(next);
                        i += 1;
                    }
                }
                '[' => re.push_str("\\["),
                other => re.push(other),
            }
            continue;
        }
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                in_class = true;
                re.push('[');
                // Go's `[^...]` negation; a literal `]` first in the class is not special in
                // Go, so escape it for the regex engine.
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    re.push_str("\\]");
                    i += 1;
                }
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    re.push_str(&regex::escape(&next.to_string()));
                    i += 1;
                }
                None => return Err(format!("bad pattern {pattern:?}: trailing backslash")),
            },
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    if in_class {
        return Err(format!("bad pattern {pattern:?}: unclosed character class"));
    }
    re.push('$');
    Regex::new(&re).map_err(|_| format!("bad pattern {pattern:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn plain_names_are_anchored_at_the_context_root() {
        let di = ignore("secret.txt\n");
        assert!(di.excludes("secret.txt"));
        assert!(!di.excludes("sub/secret.txt"), "not like .gitignore");
    }

    #[test]
    fn a_pattern_matching_a_parent_excludes_everything_below() {
        let di = ignore("node_modules\n");
        assert!(di.excludes("node_modules"));
        assert!(di.excludes("node_modules/a/b.js"));
        assert!(!di.excludes("src/node_modules/x"));
    }

    #[test]
    fn stars_stay_within_one_directory() {
        let di = ignore("*.log\n*/tmp\n");
        assert!(di.excludes("a.log"));
        assert!(!di.excludes("dir/a.log"));
        assert!(di.excludes("x/tmp"));
        assert!(di.excludes("x/tmp/y"));
        assert!(!di.excludes("x/y/tmp"));
    }

    #[test]
    fn double_star_spans_directories() {
        let di = ignore("**/*.log\n");
        assert!(di.excludes("a.log"));
        assert!(di.excludes("a/b/c.log"));
        let di = ignore("docs/**\n");
        assert!(di.excludes("docs/a"));
        assert!(di.excludes("docs/a/b"));
        let di = ignore("a/**/z\n");
        assert!(di.excludes("a/z"));
        assert!(di.excludes("a/b/c/z"));
        assert!(!di.excludes("b/z"));
    }

    #[test]
    fn question_mark_and_classes() {
        let di = ignore("file?.txt\n[ab]*.md\n[^x]y\n");
        assert!(di.excludes("file1.txt"));
        assert!(!di.excludes("file10.txt"));
        assert!(!di.excludes("file/.txt"));
        assert!(di.excludes("a-notes.md"));
        assert!(!di.excludes("c-notes.md"));
        assert!(di.excludes("zy"));
        assert!(!di.excludes("xy"));
    }

    #[test]
    fn last_match_wins_and_exceptions_reinclude() {
        let di = ignore("*.md\n!README.md\n");
        assert!(di.excludes("CHANGES.md"));
        assert!(!di.excludes("README.md"));
        let di = ignore("!README.md\n*.md\n");
        assert!(di.excludes("README.md"), "a later exclusion overrides");
        let di = ignore("docs\n!docs/keep.txt\n");
        assert!(di.excludes("docs/other.txt"));
        assert!(!di.excludes("docs/keep.txt"));
        assert!(di.excludes("docs"));
        assert!(di.must_descend("docs"));
        assert!(!di.must_descend("src"));
    }

    #[test]
    fn comments_blank_lines_slashes_and_dots_are_normalised() {
        let di =
            ignore("\u{feff}# a comment\n\n  /build/  \n./tmp//x\n a/../b \n #not a comment\n");
        assert!(di.excludes("build"));
        assert!(di.excludes("build/out.o"));
        assert!(di.excludes("tmp/x"));
        assert!(di.excludes("b"));
        assert!(!di.excludes("a"));
        // A line starting with a space then '#' is a pattern, as in Docker.
        assert!(di.excludes("#not a comment"));
    }

    #[test]
    fn escapes_and_regex_metacharacters_are_literal() {
        let di = ignore("a+b.(c)\n\\*star\n");
        assert!(di.excludes("a+b.(c)"));
        assert!(!di.excludes("aab.(c)"));
        assert!(di.excludes("*star"));
        assert!(!di.excludes("xstar"));
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let err = DockerIgnore::parse("ok\n[abc\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = DockerIgnore::parse("!\n").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn clean_follows_go() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/"), "/");
    }
}

//! `docs/reference.md` is generated from the CRD schemas (`dockwright reference`); like the
//! CRD drift check, this fails when the checked-in file no longer matches the types.

use std::path::Path;

#[test]
fn docs_reference_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = dockwright::api::reference_markdown().unwrap();
    assert!(
        checked_in == generated,
        "{} is out of date with the manifest types: regenerate it with\n  \
         cargo run -q -- reference > docs/reference.md",
        path.display()
    );
}

#[test]
fn readme_links_the_reference() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/reference.md)"),
        "README.md links docs/reference.md"
    );
}

/// Every command line in `dockwright --help`'s examples parses: each is run with `--help`
/// appended, which clap answers (exit 0) only after accepting every argument before it.
#[test]
fn help_examples_parse() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dockwright"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let examples = help
        .split_once("Examples:")
        .expect("--help ends with examples")
        .1;
    let mut seen = 0;
    for line in examples.lines() {
        let Some(command) = line.trim().strip_prefix("dockwright ") else {
            continue;
        };
        // The command itself, up to a shell redirection or the description (two spaces).
        let command = command.split(" > ").next().unwrap();
        let command = command.split("  ").next().unwrap();
        let args: Vec<&str> = command.split_whitespace().collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dockwright"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`dockwright {command}` does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen += 1;
    }
    assert!(seen >= 8, "examples found: {seen}\n{examples}");
}

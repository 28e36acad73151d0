//! The docs' rules name the tests that prove them: a table with a "proved
//! by" column, or a `Proved by:` line under a rule. Every such rule names at
//! least one test, and every test the docs name (there, or in passing)
//! exists, so a rename cannot leave a rule pointing at nothing.

use std::path::{Path, PathBuf};

/// The documents whose rules name their tests.
const DOCUMENTS: [&str; 4] = [
    "README.md",
    "docs/reliability.md",
    "docs/operating.md",
    "docs/multi-host.md",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loader/ is in the workspace")
        .to_owned()
}

/// The test references in `text`: backticked `file::function`.
fn references(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| {
            quoted.split_once("::").is_some_and(|(file, function)| {
                !file.is_empty()
                    && !function.is_empty()
                    && quoted.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'
                    })
            })
        })
        .map(str::to_owned)
        .collect()
}

/// Where the test a reference names lives: `FILE::function` is an
/// end-to-end test in `tests/FILE.rs`; `plughost::MODULE::function` (or
/// `plughost_api::...`) a unit test in that crate's module (`::` between
/// the parts of a module path).
fn source_of(reference: &str) -> Option<(PathBuf, String)> {
    let (path, function) = reference.rsplit_once("::")?;
    let root = workspace();
    let candidates = match path.split_once("::") {
        Some(("plughost", module)) => {
            let module = module.replace("::", "/");
            vec![
                root.join(format!("loader/src/{module}.rs")),
                root.join(format!("loader/src/{module}/mod.rs")),
            ]
        }
        Some(("plughost_api", module)) => {
            vec![root.join(format!("plugin-api/src/{}.rs", module.replace("::", "/")))]
        }
        Some(_) => vec![],
        None => vec![root.join(format!("tests/{path}.rs"))],
    };
    candidates
        .into_iter()
        .find(|candidate| candidate.is_file())
        .map(|file| (file, function.to_owned()))
}

/// The text of a module's file, and of its test-only submodules in files
/// of their own (`#[cfg(test)] mod tests;` in `a/mod.rs` is `a/tests.rs`):
/// a module's unit tests are named after the module either way.
fn with_test_modules(file: &Path) -> String {
    let mut text = std::fs::read_to_string(file).unwrap();
    if file.file_name().is_some_and(|name| name == "mod.rs") {
        let dir = file.parent().unwrap();
        let declared: Vec<String> = text
            .split("#[cfg(test)]")
            .skip(1)
            .filter_map(|after| {
                let item = after.trim_start().strip_prefix("mod ")?;
                let name = item.split(';').next()?.trim();
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    .then(|| name.to_owned())
            })
            .collect();
        for name in declared {
            if let Ok(more) = std::fs::read_to_string(dir.join(format!("{name}.rs"))) {
                text.push_str(&more);
            }
        }
    }
    text
}

/// The cells of a table row (`\|` is a pipe inside a cell).
fn cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in row
        .trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .chars()
    {
        match c {
            '|' if !escaped => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
        escaped = c == '\\';
    }
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// Every (document, line number, rule text, references) that names tests.
fn rules() -> Vec<(String, usize, String, Vec<String>)> {
    let mut rules = Vec::new();
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(workspace().join(document))
            .unwrap_or_else(|e| panic!("read {document}: {e}"));
        let mut proved_by_column: Option<usize> = None;
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            let trimmed = line.trim();
            if trimmed.starts_with('|') {
                let cells = cells(trimmed);
                if let Some(column) = cells.iter().position(|c| c.starts_with("proved by")) {
                    proved_by_column = Some(column);
                } else if let Some(column) = proved_by_column
                    && !trimmed
                        .chars()
                        .all(|ch| matches!(ch, '|' | '-' | ':' | ' '))
                {
                    let cell = cells.get(column).map_or("", String::as_str);
                    rules.push((
                        document.to_owned(),
                        number,
                        cells[0].clone(),
                        references(cell),
                    ));
                }
                continue;
            }
            proved_by_column = None;
            if let Some(rest) = trimmed
                .trim_start_matches(['-', '>', ' '])
                .strip_prefix("Proved by:")
            {
                rules.push((
                    document.to_owned(),
                    number,
                    trimmed.to_owned(),
                    references(rest),
                ));
            }
        }
    }
    rules
}

#[test]
fn every_rule_in_the_docs_names_tests_that_exist() {
    let rules = rules();
    assert!(
        rules.len() >= 40,
        "the rules tables and `Proved by:` lines were found ({} rules)",
        rules.len()
    );
    let mut problems = Vec::new();
    for (document, line, rule, references) in &rules {
        if references.is_empty() {
            problems.push(format!("{document}:{line}: no test named for {rule:?}"));
        }
    }
    // Every test named anywhere in the documents, rules or not.
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(workspace().join(document)).unwrap();
        for (line, reference) in text
            .lines()
            .enumerate()
            .flat_map(|(i, l)| references(l).into_iter().map(move |r| (i + 1, r)))
        {
            let Some((file, function)) = source_of(&reference) else {
                problems.push(format!(
                    "{document}:{line}: `{reference}`: no such test file"
                ));
                continue;
            };
            let source = with_test_modules(&file);
            if !source.contains(&format!("fn {function}(")) {
                problems.push(format!(
                    "{document}:{line}: `{reference}`: no fn {function} in {}",
                    file.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself: a reference to a test that is not there, or a rule
/// row with none, is caught.
#[test]
fn the_checker_finds_references_and_tells_a_missing_test() {
    assert_eq!(
        references("| x | `faults::a_b`, `Host::publish`, `supervision::c_2` and `plain` |"),
        ["faults::a_b", "supervision::c_2"]
    );
    assert_eq!(
        cells("| `a` | | b \\| c | d |"),
        ["`a`", "", "b \\| c", "d"]
    );
    assert!(source_of("faults::anything").is_some());
    assert!(source_of("no_such_file::anything").is_none());
    assert!(
        source_of("plughost::config::anything")
            .unwrap()
            .0
            .ends_with("loader/src/config/mod.rs")
    );
    let (frame, _) = source_of("plughost::library::process::frame::x").unwrap();
    assert!(frame.ends_with("loader/src/library/process/frame/mod.rs"));
    // Its tests are in a test-only submodule of their own.
    assert!(with_test_modules(&frame).contains("fn every_frame_round_trips("));
    assert!(
        !std::fs::read_to_string(&frame)
            .unwrap()
            .contains("fn every_frame_round_trips(")
    );
    assert!(
        source_of("config::x")
            .unwrap()
            .0
            .ends_with("tests/config.rs")
    );
    let (file, function) = source_of("faults::a_panic_in_on_event_fails_that_plugin_only").unwrap();
    assert!(
        std::fs::read_to_string(file)
            .unwrap()
            .contains(&format!("fn {function}("))
    );
}

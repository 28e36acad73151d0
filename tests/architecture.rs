//! The shape of `loader/src`, checked on its text: the modules import each
//! other in one direction only (no cycle, however long), and no file holds
//! more than [`MAX_LINES`] lines of code outside its tests. What belongs
//! here: rules about how the source is laid out, not what it does.
//!
//! A module is a file (`lib.rs` is the crate root, `a/mod.rs` is `a`, `a/b.rs`
//! is `a::b`); the binary's files (`main.rs`, `cli/`) are only measured. Module `m` depends on module `n` when `m`'s code (outside
//! comments, strings and `#[cfg(test)]` items) names a path into `n`: `use
//! crate::n::...`, `crate::n::f(...)` in code, `super::...`, `self::...`,
//! or a path through one of `m`'s own submodules. A path through a module's
//! re-export (`pub use`, `pub(crate) use`) leads to where the item is
//! defined: the facade re-exports, and the re-exporting line is its
//! dependency. Declaring a submodule (`mod n;`) is not a dependency. Method
//! calls are not paths: what a method of another module's type does is not
//! seen here (the compiler's privacy and the layering of types do that).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The most lines of non-test code a source file may hold (its `#[cfg(test)]`
/// items, and files that are test modules, not counted).
const MAX_LINES: usize = 600;

/// `loader/src`.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A module path: `[]` for the crate root, `["library", "c"]` for `library::c`.
type ModPath = Vec<String>;

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// One source file of the library crate.
struct File {
    path: PathBuf,
    module: ModPath,
    /// The text with comments, string and character literals blanked (line
    /// breaks kept, so line numbers hold) and `#[cfg(test)]` items removed.
    code: String,
    /// Lines of the file, and lines inside `#[cfg(test)]` items.
    lines: usize,
    test_lines: usize,
    /// Submodules declared here (`mod x;` or `mod x { ... }`), by name, and
    /// whether they are test-only (`#[cfg(test)] mod x;`).
    children: Vec<(String, bool)>,
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module a file under `root` is: `None` for the binary's files
/// (`main.rs` and its modules under `cli/`), which are not the library's.
fn module_of(root: &Path, file: &Path) -> Option<ModPath> {
    let relative = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    if parts.first().is_some_and(|dir| dir == "cli") {
        return None;
    }
    match last.as_str() {
        "main.rs" if parts.is_empty() => None,
        "lib.rs" if parts.is_empty() => Some(Vec::new()),
        "mod.rs" => Some(parts),
        name => {
            parts.push(name.trim_end_matches(".rs").to_owned());
            Some(parts)
        }
    }
}

/// `text` with comments, strings and character literals replaced by spaces
/// (line breaks kept).
fn blank_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1f}') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` with every item marked `#[cfg(test)]` blanked, and how many lines
/// those items spanned.
fn without_test_items(code: &str) -> (String, usize) {
    let mut out: Vec<char> = code.chars().collect();
    let mut test_lines = 0;
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        // The item runs to its first `;` outside braces, or its braces' end.
        let start = i;
        let mut j = i + marker.len();
        let mut depth = 0;
        while j < out.len() {
            match out[j] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        test_lines += out[start..j].iter().filter(|&&c| c == '\n').count() + 1;
        for c in &mut out[start..j] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j;
    }
    (out.into_iter().collect(), test_lines)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Star,
    Semi,
    Other,
}

/// The tokens of `code`, each with its 1-based line.
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `$crate` in a macro is not a path of this file's.
            if start > 0 && chars[start - 1] == '$' {
                tokens.push((Token::Other, line));
            } else {
                tokens.push((Token::Ident(word), line));
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push((Token::Colons, line));
            i += 2;
        } else {
            let token = match c {
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                '*' => Token::Star,
                ';' => Token::Semi,
                _ => Token::Other,
            };
            tokens.push((token, line));
            i += 1;
        }
    }
    tokens
}

/// A path as written, with the line it is on.
#[derive(Debug, Clone)]
struct Written {
    segments: Vec<String>,
    /// `as NAME`, in a `use`.
    alias: Option<String>,
    line: usize,
}

/// Read a use tree at `tokens[*i]` (after `prefix::`): a path, a group
/// `{...}`, or `*`; push every full path it names.
fn use_tree(tokens: &[(Token, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Written>) {
    let line = tokens.get(*i).map_or(0, |t| t.1);
    match tokens.get(*i).map(|t| &t.0) {
        Some(Token::Open) => {
            *i += 1;
            loop {
                match tokens.get(*i).map(|t| &t.0) {
                    Some(Token::Close) => {
                        *i += 1;
                        return;
                    }
                    Some(Token::Comma) => *i += 1,
                    None => return,
                    _ => use_tree(tokens, i, prefix.clone(), out),
                }
            }
        }
        Some(Token::Star) => {
            *i += 1;
            let mut segments = prefix;
            segments.push("*".to_owned());
            out.push(Written {
                segments,
                alias: None,
                line,
            });
        }
        Some(Token::Ident(word)) => {
            let mut segments = prefix;
            segments.push(word.clone());
            *i += 1;
            while tokens.get(*i).map(|t| &t.0) == Some(&Token::Colons) {
                *i += 1;
                match tokens.get(*i).map(|t| &t.0) {
                    Some(Token::Ident(word)) => {
                        segments.push(word.clone());
                        *i += 1;
                    }
                    Some(Token::Open) | Some(Token::Star) => {
                        return use_tree(tokens, i, segments, out);
                    }
                    _ => break,
                }
            }
            // `as NAME`: the name it is known by here, not a path.
            let mut alias = None;
            if tokens.get(*i).map(|t| &t.0) == Some(&Token::Ident("as".to_owned())) {
                if let Some((Token::Ident(name), _)) = tokens.get(*i + 1) {
                    alias = Some(name.clone());
                }
                *i += 2;
            }
            out.push(Written {
                segments,
                alias,
                line,
            });
        }
        _ => *i += 1,
    }
}

/// Every path of two segments or more in `code` (and every path a `use`
/// group names), and the re-exports: the paths of `pub use` items, by the
/// name they are exported under.
fn paths(code: &str) -> (Vec<Written>, Vec<(String, Written)>) {
    let tokens = tokens(code);
    let mut all = Vec::new();
    let mut reexports = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // `pub use ...;`, `pub(crate) use ...;`: re-exports.
        let is_use = tokens[i].0 == Token::Ident("use".to_owned());
        if is_use {
            let public = i > 0
                && (tokens[i - 1].0 == Token::Ident("pub".to_owned())
                    || (tokens[i - 1].0 == Token::Other
                        && i >= 4
                        && tokens[i - 4].0 == Token::Ident("pub".to_owned())));
            let mut j = i + 1;
            // A leading `::` (`use ::std::...`) names an extern crate.
            let mut found = Vec::new();
            while j < tokens.len() && tokens[j].0 != Token::Semi {
                use_tree(&tokens, &mut j, Vec::new(), &mut found);
            }
            for written in &found {
                if public && written.segments.last().is_some_and(|s| s != "*") {
                    let name = written
                        .alias
                        .clone()
                        .unwrap_or_else(|| written.segments.last().unwrap().clone());
                    reexports.push((name, written.clone()));
                }
            }
            all.extend(found);
            i = j;
            continue;
        }
        if let Token::Ident(word) = &tokens[i].0 {
            let after_colons = i > 0 && tokens[i - 1].0 == Token::Colons;
            if !after_colons && tokens.get(i + 1).map(|t| &t.0) == Some(&Token::Colons) {
                let mut j = i;
                let mut found = Vec::new();
                use_tree(&tokens, &mut j, Vec::new(), &mut found);
                if found.iter().any(|w| w.segments.len() >= 2) {
                    all.extend(found);
                    i = j.max(i + 1);
                    continue;
                }
                let _ = word;
            }
        }
        i += 1;
    }
    (all, reexports)
}

fn read_files() -> Vec<File> {
    let root = source_dir();
    let mut files = Vec::new();
    for path in rust_files(&root) {
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(module) = module_of(&root, &path) else {
            // The binary's: its own graph is `read_binary_files`.
            let (_, test_lines) = without_test_items(&blank_literals(&text));
            files.push(File {
                path,
                module: vec!["<main>".to_owned()],
                code: String::new(),
                lines: text.lines().count(),
                test_lines,
                children: Vec::new(),
            });
            continue;
        };
        files.push(parse_file(path, module, &text));
    }
    files
}

/// The binary's files as a crate of their own: `main.rs` its root, `cli/`
/// its modules (`crate::` in them is the binary's root).
fn read_binary_files() -> Vec<File> {
    let root = source_dir();
    let mut files = Vec::new();
    for path in rust_files(&root) {
        let relative = path.strip_prefix(&root).unwrap().to_owned();
        let module = if relative == Path::new("main.rs") {
            Vec::new()
        } else if relative.starts_with("cli") {
            let mut module = vec!["cli".to_owned()];
            module.extend(module_of(&root.join("cli"), &path).unwrap_or_default());
            module
        } else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        files.push(parse_file(path, module, &text));
    }
    files
}

fn parse_file(path: PathBuf, module: ModPath, text: &str) -> File {
    let blanked = blank_literals(text);
    let children = declared_children(&blanked);
    let (code, test_lines) = without_test_items(&blanked);
    File {
        path,
        module,
        code,
        lines: text.lines().count(),
        test_lines,
        children,
    }
}

/// `mod x;` / `mod x {` declarations in `code`, and whether each is
/// `#[cfg(test)]`.
fn declared_children(code: &str) -> Vec<(String, bool)> {
    let tokens = tokens(code);
    let mut children = Vec::new();
    for (i, (token, _)) in tokens.iter().enumerate() {
        if *token != Token::Ident("mod".to_owned()) {
            continue;
        }
        let Some((Token::Ident(name), _)) = tokens.get(i + 1) else {
            continue;
        };
        // `#[cfg(test)]` just before: the tokens `# [ cfg ( test ) ]` and
        // maybe `pub`, `pub(crate)`, back to the end of the item before.
        let start = tokens[..i]
            .iter()
            .rposition(|t| matches!(t.0, Token::Semi | Token::Open | Token::Close))
            .map_or(0, |p| p + 1);
        let before: Vec<&Token> = tokens[start..i].iter().map(|t| &t.0).collect();
        let test = before
            .windows(2)
            .any(|w| w[0] == &Token::Ident("cfg".to_owned()) && w[1] == &Token::Other)
            && before.contains(&&Token::Ident("test".to_owned()));
        children.push((name.clone(), test));
    }
    children
}

/// A dependency of one module on another, with where it is written.
#[derive(Debug, Clone)]
struct Edge {
    from: ModPath,
    to: ModPath,
    file: PathBuf,
    line: usize,
}

struct Graph {
    modules: BTreeSet<ModPath>,
    /// Re-exports of each module: exported name -> the path it names, as
    /// written in that module.
    reexports: BTreeMap<ModPath, Vec<(String, Vec<String>)>>,
    edges: Vec<Edge>,
}

impl Graph {
    fn build(files: &[File]) -> Graph {
        let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
        for file in files {
            for (child, test) in &file.children {
                if *test {
                    let mut module = file.module.clone();
                    module.push(child.clone());
                    test_only.insert(module);
                }
            }
        }
        let is_test =
            |module: &ModPath| (1..=module.len()).any(|n| test_only.contains(&module[..n]));
        let library: Vec<&File> = files
            .iter()
            .filter(|f| f.module.first().is_none_or(|m| m != "<main>") && !is_test(&f.module))
            .collect();
        let modules: BTreeSet<ModPath> = library.iter().map(|f| f.module.clone()).collect();
        let mut reexports = BTreeMap::new();
        let mut written = Vec::new();
        for file in &library {
            let (paths, exported) = paths(&file.code);
            reexports.insert(
                file.module.clone(),
                exported
                    .into_iter()
                    .map(|(name, w)| (name, w.segments))
                    .collect(),
            );
            written.push((file, paths));
        }
        let mut graph = Graph {
            modules,
            reexports,
            edges: Vec::new(),
        };
        for (file, paths) in written {
            for path in paths {
                if let Some(to) = graph.resolve(&file.module, &path.segments, 0)
                    && to != file.module
                {
                    graph.edges.push(Edge {
                        from: file.module.clone(),
                        to,
                        file: file.path.clone(),
                        line: path.line,
                    });
                }
            }
        }
        graph
    }

    /// The module that `segments`, written in module `at`, leads to; `None`
    /// for a path outside the crate (`std::...`, another crate).
    fn resolve(&self, at: &ModPath, segments: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None;
        }
        let (mut current, rest): (ModPath, &[String]) = match segments.first()?.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (at.clone(), &segments[1..]),
            "super" => {
                let mut base = at.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                (base, rest)
            }
            first => {
                let mut child = at.clone();
                child.push(first.to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
                (child, &segments[1..])
            }
        };
        for (n, segment) in rest.iter().enumerate() {
            let mut deeper = current.clone();
            deeper.push(segment.clone());
            if self.modules.contains(&deeper) {
                current = deeper;
                continue;
            }
            // An item of `current`, or one it re-exports.
            let target = self
                .reexports
                .get(&current)
                .and_then(|r| r.iter().find(|(name, _)| name == segment));
            if let Some((_, path)) = target {
                let mut path = path.clone();
                path.extend(rest[n + 1..].iter().cloned());
                return self.resolve(&current, &path, depth + 1).or(Some(current));
            }
            return Some(current);
        }
        Some(current)
    }

    /// Strongly connected groups of more than one module (Tarjan).
    fn cycles(&self) -> Vec<Vec<ModPath>> {
        let nodes: Vec<&ModPath> = self.modules.iter().collect();
        let index_of = |m: &ModPath| nodes.iter().position(|n| *n == m).unwrap();
        let mut next: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes.len()];
        for edge in &self.edges {
            if self.modules.contains(&edge.to) {
                next[index_of(&edge.from)].insert(index_of(&edge.to));
            }
        }
        struct Tarjan<'a> {
            next: &'a [BTreeSet<usize>],
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            on_stack: Vec<bool>,
            stack: Vec<usize>,
            counter: usize,
            groups: Vec<Vec<usize>>,
        }
        impl Tarjan<'_> {
            fn visit(&mut self, v: usize) {
                self.index[v] = Some(self.counter);
                self.low[v] = self.counter;
                self.counter += 1;
                self.stack.push(v);
                self.on_stack[v] = true;
                for &w in &self.next[v].clone() {
                    match self.index[w] {
                        None => {
                            self.visit(w);
                            self.low[v] = self.low[v].min(self.low[w]);
                        }
                        Some(i) if self.on_stack[w] => self.low[v] = self.low[v].min(i),
                        Some(_) => {}
                    }
                }
                if Some(self.low[v]) == self.index[v] {
                    let mut group = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack[w] = false;
                        group.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if group.len() > 1 {
                        group.sort();
                        self.groups.push(group);
                    }
                }
            }
        }
        let mut tarjan = Tarjan {
            next: &next,
            index: vec![None; nodes.len()],
            low: vec![0; nodes.len()],
            on_stack: vec![false; nodes.len()],
            stack: Vec::new(),
            counter: 0,
            groups: Vec::new(),
        };
        for v in 0..nodes.len() {
            if tarjan.index[v].is_none() {
                tarjan.visit(v);
            }
        }
        tarjan
            .groups
            .into_iter()
            .map(|g| g.into_iter().map(|i| nodes[i].clone()).collect())
            .collect()
    }

    /// The first edge from `from` to `to`.
    fn edge(&self, from: &ModPath, to: &ModPath) -> Option<&Edge> {
        self.edges.iter().find(|e| &e.from == from && &e.to == to)
    }

    /// The group, and a shortest cycle through each of its modules (each
    /// cycle once), each step with where it is written.
    fn describe(&self, group: &[ModPath]) -> String {
        let mut seen: Vec<BTreeSet<ModPath>> = Vec::new();
        let mut lines = vec![format!(
            "cycle among {{{}}}:",
            group.iter().map(|m| show(m)).collect::<Vec<_>>().join(", ")
        )];
        for start in group {
            let (members, text) = self.shortest_cycle(group, start);
            if !seen.contains(&members) {
                seen.push(members);
                lines.push(format!("  {text}"));
            }
        }
        lines.join("\n")
    }

    /// A shortest cycle through `start` inside `group`: its modules, and its
    /// steps with where each is written.
    fn shortest_cycle(&self, group: &[ModPath], start: &ModPath) -> (BTreeSet<ModPath>, String) {
        let mut came_from: BTreeMap<ModPath, ModPath> = BTreeMap::new();
        let mut queue = VecDeque::from([start.clone()]);
        let mut closing = None;
        'search: while let Some(m) = queue.pop_front() {
            let targets: BTreeSet<ModPath> = self
                .edges
                .iter()
                .filter(|e| e.from == m && group.contains(&e.to))
                .map(|e| e.to.clone())
                .collect();
            for t in targets {
                if &t == start {
                    closing = Some(m.clone());
                    break 'search;
                }
                if !came_from.contains_key(&t) {
                    came_from.insert(t.clone(), m.clone());
                    queue.push_back(t);
                }
            }
        }
        let mut middle = Vec::new();
        let mut at = closing.expect("a strongly connected group has a cycle");
        while &at != start {
            middle.push(at.clone());
            at = came_from[&at].clone();
        }
        middle.reverse();
        let mut cycle = vec![start.clone()];
        cycle.extend(middle);
        cycle.push(start.clone());
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let edge = self.edge(&w[0], &w[1]).unwrap();
                format!(
                    "{} -> {} ({}:{})",
                    show(&w[0]),
                    show(&w[1]),
                    edge.file
                        .strip_prefix(source_dir())
                        .unwrap_or(&edge.file)
                        .display(),
                    edge.line
                )
            })
            .collect();
        (cycle.into_iter().collect(), steps.join(", "))
    }

    /// Every dependency, one per line (`from -> to (file:line)`), for a
    /// reader who wants the whole graph: `PLUGHOST_SHOW_GRAPH=1 cargo test
    /// -p plughost --test architecture -- --nocapture`.
    fn show_all(&self) -> String {
        let mut seen = BTreeSet::new();
        let mut lines = Vec::new();
        for edge in &self.edges {
            if seen.insert((edge.from.clone(), edge.to.clone())) {
                lines.push(format!(
                    "{} -> {} ({}:{})",
                    show(&edge.from),
                    show(&edge.to),
                    edge.file
                        .strip_prefix(source_dir())
                        .unwrap_or(&edge.file)
                        .display(),
                    edge.line
                ));
            }
        }
        lines.sort();
        lines.join("\n")
    }
}

#[test]
fn no_module_of_the_loader_imports_a_module_that_imports_it_back() {
    let graph = Graph::build(&read_files());
    assert!(
        graph.modules.len() > 10,
        "the modules of loader/src were found ({})",
        graph.modules.len()
    );
    if std::env::var_os("PLUGHOST_SHOW_GRAPH").is_some() {
        println!("{}", graph.show_all());
    }
    let cycles: Vec<String> = graph.cycles().iter().map(|g| graph.describe(g)).collect();
    assert!(
        cycles.is_empty(),
        "the modules of loader/src import each other in a cycle; make the lower one \
         independent of the higher one (move the shared item down, or hand a callback \
         down):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_module_of_the_binary_imports_a_module_that_imports_it_back() {
    let graph = Graph::build(&read_binary_files());
    assert!(
        graph.modules.len() > 2,
        "the binary's modules were found ({})",
        graph.modules.len()
    );
    let cycles: Vec<String> = graph.cycles().iter().map(|g| graph.describe(g)).collect();
    assert!(
        cycles.is_empty(),
        "the binary's modules (main.rs, cli/) import each other in a cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_source_file_of_the_loader_holds_more_than_600_lines_of_code() {
    let files = read_files();
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    for file in &files {
        for (child, test) in &file.children {
            if *test {
                let mut module = file.module.clone();
                module.push(child.clone());
                test_only.insert(module);
            }
        }
    }
    let too_long: Vec<String> = files
        .iter()
        .filter(|f| !(1..=f.module.len()).any(|n| test_only.contains(&f.module[..n])))
        .filter(|f| f.lines - f.test_lines.min(f.lines) > MAX_LINES)
        .map(|f| {
            format!(
                "{}: {} lines of code (and {} of tests)",
                f.path.strip_prefix(source_dir()).unwrap().display(),
                f.lines - f.test_lines,
                f.test_lines
            )
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "source files over {MAX_LINES} lines of non-test code; split them by job (a test \
         module may move to a file of its own, `foo/tests.rs`):\n{}",
        too_long.join("\n")
    );
}

/// The checker itself, on small sources: paths in code, in `use` groups,
/// through `super` and re-exports are found; comments and strings are not.
#[test]
fn the_checker_reads_paths_and_skips_comments_strings_and_tests() {
    let code = blank_literals(
        "use crate::{a::X, b::{self, c::Y}};\n// crate::nope::Z\nlet s = \"crate::nope\";\nsuper::d::f();\nlet c = '\"'; crate::e::g();\n",
    );
    let (found, _) = paths(&code);
    let found: Vec<String> = found.iter().map(|w| w.segments.join("::")).collect();
    assert_eq!(
        found,
        [
            "crate::a::X",
            "crate::b::self",
            "crate::b::c::Y",
            "super::d::f",
            "crate::e::g"
        ]
    );
    let (code, test_lines) =
        without_test_items("fn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::x::Y;\n}\n");
    assert_eq!(test_lines, 4);
    assert!(!code.contains("crate::x"));
    // A test-only module marks itself, not the modules declared after it.
    let children = declared_children(&blank_literals(
        "mod a;\n#[cfg(test)]\nmod testing;\nmod text;\npub(crate) mod worker;\n",
    ));
    assert_eq!(
        children,
        [
            ("a".to_owned(), false),
            ("testing".to_owned(), true),
            ("text".to_owned(), false),
            ("worker".to_owned(), false)
        ]
    );
    let (_, reexports) =
        paths("pub use inner::{Thing, Other as Renamed};\npub(crate) use deep::path::Item;\n");
    let names: Vec<&str> = reexports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Thing", "Renamed", "Item"]);
}

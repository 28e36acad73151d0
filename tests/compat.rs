//! Plugins outlive host releases (docs/compatibility.md). Plugins built
//! against every ABI frozen in tests/compat/ load and run in today's host; a
//! capability appended to a copy of today's interface keeps plugins built
//! before it loading and working, in a host built from that copy; a plugin
//! newer than its host loads partly; another major, or a layout that differs
//! from the ABI a plugin declares, is refused with one line naming both
//! versions (and the type). Every Rust fixture is built at test time into one
//! target directory, so their dependencies compile once.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compat_dir() -> PathBuf {
    root().join("tests/compat")
}

/// The one target directory of every Rust fixture.
fn fixture_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-target")
}

fn write_if_changed(path: &Path, text: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `cargo build` in the fixture workspace `workspace`, with `args`.
fn cargo_build(workspace: &Path, args: &[&str]) {
    let started = std::time::Instant::now();
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .current_dir(workspace)
        .args(["build", "--quiet"])
        .args(args)
        // As in the workspace's own profile: no debug info for dependencies.
        .args(["--config", r#"profile.dev.package."*".debug=false"#])
        .arg("--target-dir")
        .arg(fixture_target())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "building the fixture workspace {} failed:\n{}",
        workspace.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "fixture workspace {} built in {:?}",
        workspace.display(),
        started.elapsed()
    );
}

/// A plugin library and the loader (a host of its ABI) built beside it.
struct Built {
    plugin: PathBuf,
    loader: Option<PathBuf>,
}

fn built(name: &str, loader: bool) -> Built {
    let dir = fixture_target().join("debug");
    Built {
        plugin: dir.join(format!("libcompat_plugin_{}.so", name.replace('-', "_"))),
        loader: loader.then(|| dir.join(format!("compat-loader-{name}"))),
    }
}

/// The ABIs frozen in `tests/compat/<language>/abi-M.N/`, oldest first, as
/// ("M.N", directory).
fn frozen_dirs(language: &str) -> Vec<(String, PathBuf)> {
    let mut found: Vec<((u32, u32), String, PathBuf)> =
        std::fs::read_dir(compat_dir().join(language))
            .unwrap()
            .filter_map(|entry| {
                let path = entry.unwrap().path();
                let abi = path.file_name()?.to_str()?.strip_prefix("abi-")?.to_owned();
                let (major, minor) = abi.split_once('.')?;
                Some(((major.parse().ok()?, minor.parse().ok()?), abi, path))
            })
            .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no frozen ABI in tests/compat/{language}"
    );
    found
        .into_iter()
        .map(|(_, abi, path)| (abi, path))
        .collect()
}

/// Every Rust plugin ABI frozen in tests/compat/rust/ (a workspace each:
/// the released plughost-api, `compat-plugin-abi-M-N` built against it and
/// `compat-loader-abi-M-N`, a host of it), built as it is (`--locked`), as
/// ("M.N", what was built).
fn frozen_rust() -> &'static [(String, Built)] {
    static BUILT: OnceLock<Vec<(String, Built)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        frozen_dirs("rust")
            .into_iter()
            .map(|(abi, dir)| {
                cargo_build(&dir, &["--locked"]);
                let built = built(&format!("abi-{}", abi.replace('.', "-")), true);
                (abi, built)
            })
            .collect()
    })
}

/// One text edit of a copied interface crate.
type Edit<'a> = &'a dyn Fn(&str) -> String;

/// The fixture plugin (and loader) of the frozen 1.0 workspace (the template
/// of every fixture), built against
/// a copy of today's plugin-api/ with `edits` applied (file name, edit), as
/// the packages `compat-plugin-NAME` (and `compat-loader-NAME`), in a
/// workspace of its own in `CARGO_TARGET_TMPDIR`.
fn against_todays_interface(
    name: &str,
    edits: &[(&str, Edit<'_>)],
    features: &[&str],
    loader: bool,
) -> Built {
    let frozen = compat_dir().join("rust/abi-1.0");
    let workspace = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("compat-{name}"));
    // The frozen workspace's manifest and lockfile: the same dependency
    // versions and profile, so the shared target directory reuses them. The
    // interface crate sits in a directory named after the fixture: cargo
    // names a path package's artifacts by its path inside the workspace, so
    // two copies of plughost-api at `plughost-api/` of the same version would
    // share (and overwrite) each other's build.
    let api_dir = format!("plughost-api-{name}");
    write_if_changed(
        &workspace.join("Cargo.toml"),
        read(&frozen.join("Cargo.toml"))
            .replace(
                "members = [\"plughost-api\",",
                &format!("members = [\"{api_dir}\","),
            )
            .replace(
                "plughost-api = { path = \"plughost-api\" }",
                &format!("plughost-api = {{ path = \"{api_dir}\" }}"),
            )
            .as_bytes(),
    );
    write_if_changed(
        &workspace.join("Cargo.lock"),
        read(&frozen.join("Cargo.lock")).as_bytes(),
    );
    // plugin-api/ as it is today, under its own version, then edited.
    let live = root().join("plugin-api");
    let version = read(&live.join("Cargo.toml"))
        .parse::<toml::Table>()
        .unwrap()["package"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut files = vec![(
        "Cargo.toml".to_owned(),
        read(&frozen.join("plughost-api/Cargo.toml"))
            .replace("version = \"1.0.0\"", &format!("version = \"{version}\"")),
    )];
    files.push(("README.md".to_owned(), read(&live.join("README.md"))));
    for entry in std::fs::read_dir(live.join("src")).unwrap() {
        let entry = entry.unwrap();
        let file = format!("src/{}", entry.file_name().to_string_lossy());
        files.push((file, read(&entry.path())));
    }
    for (file, edit) in edits {
        let (_, text) = files
            .iter_mut()
            .find(|(name, _)| name == file)
            .unwrap_or_else(|| panic!("no {file} in plugin-api/"));
        let edited = edit(text);
        assert_ne!(*text, edited, "an edit of {file} changed nothing");
        *text = edited;
    }
    for (file, text) in &files {
        write_if_changed(&workspace.join(&api_dir).join(file), text.as_bytes());
    }
    // The frozen plugin and loader, under names of their own.
    for (package, frozen_name) in [
        ("plugin", "compat-plugin-abi-1-0"),
        ("loader", "compat-loader-abi-1-0"),
    ] {
        let manifest = read(&frozen.join(package).join("Cargo.toml"))
            .replace(frozen_name, &frozen_name.replace("abi-1-0", name));
        write_if_changed(
            &workspace.join(package).join("Cargo.toml"),
            manifest.as_bytes(),
        );
        let source = if package == "plugin" {
            "src/lib.rs"
        } else {
            "src/main.rs"
        };
        write_if_changed(
            &workspace.join(package).join(source),
            read(&frozen.join(package).join(source)).as_bytes(),
        );
    }
    let plugin = format!("compat-plugin-{name}");
    let loader_package = format!("compat-loader-{name}");
    let mut args = vec!["-p", &plugin];
    if loader {
        args.extend(["-p", &loader_package]);
    }
    let features = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    cargo_build(&workspace, &args);
    built(name, loader)
}

/// Built against today's plugin-api, unchanged.
fn todays() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| against_todays_interface("today", &[], &[], false))
}

/// Today's ABI version, as plugin-api/src/abi.rs declares it: (major, minor).
fn todays_abi() -> (u32, u32) {
    let abi = read(&root().join("plugin-api/src/abi.rs"));
    let number = |name: &str| -> u32 {
        let at = abi
            .find(&format!("pub const {name}: u32 = "))
            .unwrap_or_else(|| panic!("no {name} in abi.rs"));
        abi[at..]
            .split(" = ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number("ABI_MAJOR"), number("ABI_MINOR"))
}

/// Insert `text` as the last field of `pub struct NAME` in `source`.
fn append_field(source: &str, name: &str, text: &str) -> String {
    let start = source
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let end = start + source[start..].find("\n}\n").expect("the struct's end");
    format!("{}\n{text}{}", &source[..end], &source[end..])
}

/// Insert `text` right after `anchor` (the opening of a struct literal).
fn after(source: &str, anchor: &str, text: &str) -> String {
    let at = source
        .find(anchor)
        .unwrap_or_else(|| panic!("no {anchor:?}"))
        + anchor.len();
    format!("{}\n{text}{}", &source[..at], &source[at..])
}

/// Today's ABI with its minor bumped, as a real append does it.
fn bump_minor(abi: &str) -> String {
    let (major, minor) = todays_abi();
    abi.replace(
        &format!("pub const ABI_VERSION: &str = \"{major}.{minor}.0\";"),
        &format!("pub const ABI_VERSION: &str = \"{major}.{}.0\";", minor + 1),
    )
    .replace(
        &format!("pub const ABI_MINOR: u32 = {minor};"),
        &format!("pub const ABI_MINOR: u32 = {};", minor + 1),
    )
}

/// The append, done to a copy of today's interface as the next minor would
/// do it: a field on the root module, a function on the plugin object, a
/// function on the host, each at the end of its prefix type, and what fills
/// them (the export macro's tables, the host's table, a `Context` method).
fn append_abi(abi: &str) -> String {
    let abi = append_field(
        abi,
        "PluginModule",
        "    /// Appended by tests/compat.rs.\n    pub appended_note: RStr<'static>,",
    );
    let abi = append_field(
        &abi,
        "PluginVTable",
        "    /// Appended by tests/compat.rs.\n    pub appended_answer: unsafe extern \"C\" fn(state: *mut c_void) -> u32,",
    );
    let abi = append_field(
        &abi,
        "HostVTable",
        "    /// Appended by tests/compat.rs.\n    pub appended_answer: unsafe extern \"C\" fn(ctx: *const c_void) -> u32,",
    );
    after(
        &abi,
        "WithMetadata::new(HostVTable {",
        "            appended_answer: { unsafe extern \"C\" fn answer(_: *const c_void) -> u32 { 42 } answer },",
    )
}

fn append_export(export: &str) -> String {
    let export = after(
        export,
        "WithMetadata::new(PluginVTable {",
        "            appended_answer: { unsafe extern \"C\" fn answer(_: *mut c_void) -> u32 { 7 } answer },",
    );
    after(
        &export,
        "    PluginModule {",
        "        appended_note: RStr::from_str(\"appended\"),",
    )
}

fn append_context(context: &str) -> String {
    after(
        context,
        "impl Context {",
        "    /// Appended by tests/compat.rs.
    pub fn appended_answer(&self) -> Option<u32> {
        let answer = self.host.vtable.appended_answer()?;
        // SAFETY: the host's own context, with its own table's function.
        Some(unsafe { answer(self.host.ctx) })
    }
",
    )
}

fn bump_crate_minor(manifest: &str) -> String {
    let (major, minor) = todays_abi();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a version");
    let crate_minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    manifest.replace(
        &format!("version = \"{version}\""),
        &format!("version = \"{major}.{}.0\"", crate_minor.max(minor) + 1),
    )
}

/// Built against today's interface with a capability appended (and its
/// minor bumped): the plugin uses the appended host function, the loader
/// reads the appended root module field and calls the appended plugin
/// function.
fn appended() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        against_todays_interface(
            "appended",
            &[
                ("src/abi.rs", &|abi| bump_minor(&append_abi(abi))),
                ("src/export.rs", &append_export),
                ("src/context.rs", &append_context),
                ("Cargo.toml", &bump_crate_minor),
            ],
            &[
                "compat-plugin-appended/appended",
                "compat-loader-appended/appended",
            ],
            true,
        )
    })
}

/// What a loader prints for `plugin` (built against `abi`, `major.minor`):
/// one line per step. `loader_knows_append`: the loader was built against
/// the appended interface; `plugin_has_append`: so was the plugin.
fn transcript(
    package: &str,
    abi: &str,
    support: &str,
    loader_knows_append: bool,
    plugin_has_append: bool,
) -> String {
    let mut lines = vec![format!(
        "loaded {package} 0.1.0, built against ABI {abi}: {support}"
    )];
    let present = plugin_has_append && loader_knows_append;
    if loader_knows_append {
        lines.push(format!(
            "appended root module field: {}",
            if present { "appended" } else { "absent" }
        ));
    }
    lines.push(format!(
        "log Info: compat plugin (ABI {abi}.0) created as compat"
    ));
    if loader_knows_append {
        lines.push(format!(
            "appended plugin function: {}",
            if present { "7" } else { "absent" }
        ));
    }
    lines.push("published compat.pong 1".into());
    lines.push("event compat.ping: ok".into());
    lines.push(format!(
        "event compat.fail: failed: compat plugin (ABI {abi}.0) fails on request"
    ));
    lines.push(format!(
        "event compat.panic: panicked: panicked at plugin/src/lib.rs:LINE: compat plugin (ABI {abi}.0) panics on request"
    ));
    if plugin_has_append {
        lines.push(format!(
            "published compat.answer {}",
            if loader_knows_append {
                "42"
            } else {
                "\"absent\""
            }
        ));
    }
    lines.extend([
        "event compat.ask: ok".to_owned(),
        "published compat.pong 5".to_owned(),
        "event compat.ping: ok".to_owned(),
        format!("health 1: ABI {abi}.0, 5 events"),
        format!("log Info: compat plugin (ABI {abi}.0) stopped after 5 events"),
        "stopped".to_owned(),
        "dropped".to_owned(),
    ]);
    lines.join("\n") + "\n"
}

/// Run `loader` on `library`: (exit code, its output with the panic's line
/// number replaced by `LINE`).
fn load_with(loader: &Path, library: &Path) -> (i32, String) {
    let output = std::process::Command::new(loader)
        .arg(library)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", loader.display()));
    let text = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match line.split_once("plugin/src/lib.rs:") {
            Some((before, after)) => {
                let rest = after.split_once(':').map_or("", |(_, rest)| rest);
                format!("{before}plugin/src/lib.rs:LINE:{rest}")
            }
            None => line.to_owned(),
        })
        .map(|line| line + "\n")
        .collect();
    (output.status.code().unwrap_or(-1), text)
}

fn abi_text((major, minor): (u32, u32)) -> String {
    format!("{major}.{minor}")
}

/// Compile tests/compat/c/plugin.c against the header in `include` into
/// `lib<out>.so` in `s`, with extra flags.
fn cc_compat(s: &Scratch, include: &Path, out: &str, flags: &[&str]) -> PathBuf {
    let library = s.path(&format!("lib{out}.so"));
    let output = std::process::Command::new("cc")
        .args(cflags::C_PLUGIN_FLAGS)
        .args(flags)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&library)
        .arg(compat_dir().join("c/plugin.c"))
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc against {}: {}",
        include.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    library
}

/// An instance of `library` taking the compat topics.
fn compat_instance(name: &str, library: &Path) -> Plugin {
    Plugin::new(name, library)
        .subscribe(["compat.ping", "compat.fail", "compat.ask"])
        .restart(Restart::Never)
}

/// A config with `instances`, a status server, and a logger writing every
/// `compat.pong` and `compat.answer` to `answers.jsonl`.
fn compat_config(s: &Scratch, instances: impl IntoIterator<Item = Plugin>) -> PathBuf {
    let mut config = Config::new().status(Status::any_port());
    for instance in instances {
        config = config.plugin(instance);
    }
    config
        .plugin(
            logger("answers", &s.path("answers.jsonl")).subscribe(["compat.pong", "compat.answer"]),
        )
        .write(s)
}

/// (source, topic, payload) of every line the `answers` logger wrote.
fn answers(s: &Scratch) -> Vec<(String, String, serde_json::Value)> {
    let mut lines: Vec<_> = s
        .log_lines("answers.jsonl")
        .into_iter()
        .map(|line| {
            // A plugin built before content types publishes bytes: the
            // logger writes them in base64; they are the JSON it sent.
            let payload = match line["payload_base64"].as_str() {
                Some(b64) => {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
                }
                None => line["payload"].clone(),
            };
            (
                line["source"].as_str().unwrap().to_owned(),
                line["topic"].as_str().unwrap().to_owned(),
                payload,
            )
        })
        .collect();
    lines.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    lines
}

/// Run `config` with a status server: send `events`, wait until the
/// `answers` logger holds `expected_answers` lines, read `/health` of every
/// instance in `names`, then end the input and wait for the host to stop.
/// Returns the health of each and the host's output and stderr.
fn run_compat(
    s: &Scratch,
    config: &Path,
    names: &[&str],
    events: &str,
    expected_answers: usize,
) -> (Vec<serde_json::Value>, std::process::Output, String) {
    let mut host = Running::start(config);
    let address = host.status_address();
    host.send(events);
    eventually("the answers to be logged", || {
        std::fs::read_to_string(s.path("answers.jsonl"))
            .is_ok_and(|text| text.lines().count() >= expected_answers)
    });
    let health = names
        .iter()
        .map(|name| get_json(&address, &format!("/health?plugin={name}")).1)
        .collect();
    drop(host.stdin.take());
    let (output, lines) = host.wait(std::time::Duration::from_secs(60));
    (health, output, lines.join("\n"))
}

#[test]
fn plugins_built_against_every_frozen_abi_run_in_todays_host() {
    let s = Scratch::new("compat-frozen");
    let unchecked = "(config not checked: this plugin reads it only when it starts)";
    // (instance, library, line of `check`, health message if it reports health)
    let mut fixtures: Vec<(String, PathBuf, String, Option<String>)> = Vec::new();
    for (abi, built) in frozen_rust() {
        let name = format!("rust-{}", abi.replace('.', "-"));
        let package = format!("compat-plugin-abi-{}", abi.replace('.', "-"));
        let line = format!(
            "{name}: ok: {package} 0.1.0 (rust, plughost-api ABI {abi}) from {}",
            built.plugin.display()
        );
        let health = format!("ABI {abi}.0, 3 events");
        fixtures.push((name, built.plugin.clone(), line, Some(health)));
    }
    for (abi, include) in frozen_dirs("c") {
        let name = format!("c-{}", abi.replace('.', "-"));
        let library = cc_compat(&s, &include, &name, &[]);
        let line = format!(
            "{name}: ok: compat-c {abi} (c, plughost.h {abi}) from {} {unchecked}",
            library.display()
        );
        // Health came with C ABI 1.1: a 1.0 plugin is left out of /health.
        let health = (abi != "1.0").then(|| format!("C ABI {abi}, 3 events"));
        fixtures.push((name, library, line, health));
    }
    let config = compat_config(
        &s,
        fixtures
            .iter()
            .map(|(name, library, ..)| compat_instance(name, library)),
    );

    // Load: `check` and `discover` name the ABI each was built against.
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let mut expected: String = fixtures
        .iter()
        .map(|(.., line, _)| format!("{line}\n"))
        .collect();
    expected += &format!(
        "answers: ok: logger 0.1.0 (rust, plughost-api ABI {}) from {}\n",
        abi_text(todays_abi()),
        plugin_path("logger").display()
    );
    assert_eq!(stdout(&out), expected);
    let dir = s.path("discover");
    std::fs::create_dir_all(&dir).unwrap();
    let mut listed = String::new();
    for (abi, built) in frozen_rust() {
        let file = dir.join(format!("librust_{}.so", abi.replace('.', "_")));
        std::fs::copy(&built.plugin, &file).unwrap();
        listed += &format!(
            "{}: compat-plugin-abi-{} 0.1.0 (rust, plughost-api ABI {abi}): fully supported\n",
            file.display(),
            abi.replace('.', "-")
        );
    }
    let out = run(&["discover", dir.to_str().unwrap()], "");
    assert_eq!(stdout(&out), listed);

    // Events, health, stop.
    let events = [
        event("compat.ping", json!(1)),
        event("compat.fail", json!(2)),
        event("compat.ping", json!(3)),
    ]
    .concat();
    let names: Vec<&str> = fixtures.iter().map(|(name, ..)| name.as_str()).collect();
    let (health, out, log) = run_compat(&s, &config, &names, &events, 2 * names.len());
    assert!(out.status.success(), "{log}");
    let mut pongs = Vec::new();
    for name in &names {
        for payload in [1, 3] {
            pongs.push((name.to_string(), "compat.pong".to_owned(), json!(payload)));
        }
    }
    pongs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(answers(&s), pongs);
    // What they publish is bytes: they cannot say otherwise.
    for line in s.log_lines("answers.jsonl") {
        assert!(line["payload_base64"].is_string(), "{line}");
    }
    for ((name, .., message), health) in fixtures.iter().zip(&health) {
        let expected = match message {
            Some(message) => json!({
                "status": "degraded",
                "plugins": [{"name": name, "status": "degraded", "message": message}],
            }),
            None => json!({"status": "ok", "plugins": []}),
        };
        assert_eq!(*health, expected, "{name}");
        let row = summary_row(&out, name);
        assert_eq!(
            (row.state.as_str(), row.received, row.processed, row.failed),
            ("stopped", 3, 2, 1),
            "{name}"
        );
    }
    for (abi, _) in frozen_rust() {
        let stopped = format!("compat plugin (ABI {abi}.0) stopped after 3 events");
        assert!(log.contains(&stopped), "{stopped}\n{log}");
    }
    for (abi, _) in frozen_dirs("c") {
        let stopped = format!("compat C plugin (ABI {abi}) stopped after 3 events");
        assert!(log.contains(&stopped), "{stopped}\n{log}");
    }
}

#[test]
fn appending_a_capability_keeps_plugins_built_before_it_loading_and_working() {
    let today = todays();
    let appended = appended();
    let host = appended.loader.as_ref().unwrap();
    let today_abi = abi_text(todays_abi());
    let (major, minor) = todays_abi();
    let newer = abi_text((major, minor + 1));

    // A host built from the appended interface: plugins built before the
    // append (against every frozen ABI, and today's) load fully; what they
    // lack reads as absent; they run.
    for (abi, frozen) in frozen_rust() {
        let package = format!("compat-plugin-abi-{}", abi.replace('.', "-"));
        assert_eq!(
            load_with(host, &frozen.plugin),
            (0, transcript(&package, abi, "fully supported", true, false)),
            "{package}"
        );
    }
    assert_eq!(
        load_with(host, &today.plugin),
        (
            0,
            transcript(
                "compat-plugin-today",
                &today_abi,
                "fully supported",
                true,
                false
            )
        )
    );
    // And one built after it has it all.
    assert_eq!(
        load_with(host, &appended.plugin),
        (
            0,
            transcript(
                "compat-plugin-appended",
                &newer,
                "fully supported",
                true,
                true
            )
        )
    );
}

#[test]
fn a_plugin_built_against_a_newer_abi_loads_partly_in_an_older_host() {
    let today = todays();
    let appended = appended();
    let (major, minor) = todays_abi();
    let newer = abi_text((major, minor + 1));

    // The smallest host of each frozen ABI (1.0 first) loads what today
    // builds, and what the next minor would build, calling only what it
    // knows.
    for (abi, frozen) in frozen_rust() {
        let old_host = frozen.loader.as_ref().unwrap();
        let frozen_minor: u32 = abi.split('.').nth(1).unwrap().parse().unwrap();
        let today_support = if minor <= frozen_minor {
            "fully supported"
        } else {
            "partly supported"
        };
        assert_eq!(
            load_with(old_host, &today.plugin),
            (
                0,
                transcript(
                    "compat-plugin-today",
                    &abi_text((major, minor)),
                    today_support,
                    false,
                    false
                )
            ),
            "the host of ABI {abi}"
        );
        assert_eq!(
            load_with(old_host, &appended.plugin),
            (
                0,
                transcript(
                    "compat-plugin-appended",
                    &newer,
                    "partly supported",
                    false,
                    true
                )
            ),
            "the host of ABI {abi}"
        );
    }

    // Today's plughost is the older host of the appended plugin: it says
    // so, runs it, and the host function it lacks answers "absent".
    let s = Scratch::new("compat-newer");
    let config = compat_config(&s, [compat_instance("newer", &appended.plugin)]);
    let partly = format!(
        "partly supported: this host speaks plugin ABI {}; what ABI {newer} added is not called",
        abi_text((major, minor))
    );
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out).lines().next().unwrap(),
        format!(
            "newer: ok: compat-plugin-appended 0.1.0 (rust, plughost-api ABI {newer}) from {} ({partly})",
            appended.plugin.display()
        )
    );
    let dir = s.path("discover");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&appended.plugin, dir.join("libnewer.so")).unwrap();
    let out = run(&["discover", dir.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!(
            "{}: compat-plugin-appended 0.1.0 (rust, plughost-api ABI {newer}): {partly}\n",
            dir.join("libnewer.so").display()
        )
    );
    // The answer to `compat.ask` comes last: all three were handled by then.
    let events = [
        event("compat.ping", json!(1)),
        event("compat.fail", json!(2)),
        event("compat.ask", json!(3)),
    ]
    .concat();
    let (health, out, log) = run_compat(&s, &config, &["newer"], &events, 2);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        answers(&s),
        vec![
            ("newer".into(), "compat.answer".into(), json!("absent")),
            ("newer".into(), "compat.pong".into(), json!(1)),
        ]
    );
    assert_eq!(
        health[0]["plugins"][0]["message"],
        format!("ABI {newer}.0, 3 events")
    );
    let row = summary_row(&out, "newer");
    assert_eq!((row.processed, row.failed), (2, 1));
    assert!(
        log.contains(&format!(
            "built against plughost-api ABI {newer}, newer than this host: this host speaks plugin ABI"
        )),
        "a warning when it loads:\n{log}"
    );
}

/// `Publisher` (ABI 1.1) in a host of ABI 1.0: its publish returns an error
/// naming both versions, and the plugin goes on; in today's host it
/// publishes.
#[test]
fn a_publisher_in_a_host_older_than_abi_1_1_returns_an_error_and_the_plugin_goes_on() {
    let built = against_todays_interface("publisher", &[], &["publisher"], false);
    let (_, frozen) = frozen_rust()
        .iter()
        .find(|(abi, _)| abi == "1.0")
        .expect("ABI 1.0 is frozen");
    let (code, printed) = load_with(frozen.loader.as_ref().unwrap(), &built.plugin);
    assert_eq!(code, 0, "{printed}");
    for line in [
        "published compat.answer this host speaks plugin ABI 1.0.0; `Publisher` needs ABI 1.1: upgrade plughost",
        "event compat.ask: ok",
        "published compat.pong 5",
        "stopped",
        "dropped",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }

    let s = Scratch::new("compat-publisher");
    let config = compat_config(&s, [compat_instance("publisher", &built.plugin)]);
    let events = [
        event("compat.ask", json!(3)),
        event("compat.ping", json!(1)),
    ]
    .concat();
    let (_, out, log) = run_compat(&s, &config, &[], &events, 2);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        answers(&s),
        vec![
            ("publisher".into(), "compat.answer".into(), json!(3)),
            ("publisher".into(), "compat.pong".into(), json!(1)),
        ]
    );
}

/// Built against a copy of today's interface declaring plugin ABI `version`
/// (and the crate version to match, as a real release would).
fn declaring(name: &str, version: &str) -> Built {
    let (major, minor) = todays_abi();
    let mut parts = version.split('.').map(|n| n.parse::<u32>().unwrap());
    let (new_major, new_minor) = (parts.next().unwrap(), parts.next().unwrap());
    let abi = |abi: &str| {
        abi.replace(
            &format!("pub const ABI_VERSION: &str = \"{major}.{minor}.0\";"),
            &format!("pub const ABI_VERSION: &str = \"{version}\";"),
        )
        .replace(
            &format!("pub const ABI_MAJOR: u32 = {major};"),
            &format!("pub const ABI_MAJOR: u32 = {new_major};"),
        )
        .replace(
            &format!("pub const ABI_MINOR: u32 = {minor};"),
            &format!("pub const ABI_MINOR: u32 = {new_minor};"),
        )
    };
    let manifest = |manifest: &str| {
        let line = manifest
            .lines()
            .find(|l| l.starts_with("version = \""))
            .unwrap();
        manifest.replace(line, &format!("version = \"{version}\""))
    };
    against_todays_interface(
        name,
        &[("src/abi.rs", &abi), ("Cargo.toml", &manifest)],
        &[],
        false,
    )
}

/// `check`, `run` and `discover` of today's host all refuse `library` with
/// the one line `reason`.
fn refused_everywhere(s: &Scratch, library: &Path, reason: &str) {
    let config = Config::new().plugin(Plugin::new("x", library)).write(s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("x: error: {}: {reason}\n", library.display())
    );
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert_eq!(
        line,
        format!("error: plugin `x`: {}: {reason}", library.display())
    );
    let dir = s.path("discover");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(library, dir.join("libother.so")).unwrap();
    let out = run(&["discover", dir.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!(
            "{}: not usable: {reason}\n",
            dir.join("libother.so").display()
        )
    );
}

#[test]
fn plugins_of_another_major_are_refused_naming_both_versions() {
    let host = abi_text(todays_abi());
    // Every build from before ABI 1.0 declared its plughost-api version, 0.x.
    let pre = declaring("pre-1-0", "0.1.0");
    let reason = format!(
        "built against plughost-api 0.1.0, from before the stable plugin ABI 1.0; this host speaks ABI {host} and loads 1.x only: rebuild the plugin against plughost-api 1.x"
    );
    refused_everywhere(&Scratch::new("compat-pre-1-0"), &pre.plugin, &reason);
    // So does the host of every frozen ABI.
    for (abi, frozen) in frozen_rust() {
        assert_eq!(
            load_with(frozen.loader.as_ref().unwrap(), &pre.plugin),
            (
                1,
                format!(
                    "refused: built against plughost-api 0.1.0, from before the stable plugin ABI 1.0; this host speaks ABI {abi} and loads 1.x only: rebuild the plugin against plughost-api 1.x\n"
                )
            )
        );
    }
}

#[test]
fn a_plugin_of_a_newer_major_is_refused_naming_both_versions() {
    let host = abi_text(todays_abi());
    let next = declaring("abi-2-0", "2.0.0");
    let reason = format!(
        "built against plugin ABI 2.0.0, but this host speaks ABI {host} and loads 1.x only: upgrade plughost, or rebuild the plugin against plughost-api 1.x"
    );
    refused_everywhere(&Scratch::new("compat-2-0"), &next.plugin, &reason);
}

#[test]
fn a_plugin_whose_layout_differs_from_the_abi_it_declares_is_refused_naming_the_type() {
    // A capability appended without bumping the ABI's minor: a plugin
    // built so declares this host's ABI but has a longer plugin table.
    let unbumped = against_todays_interface(
        "unbumped",
        &[
            ("src/abi.rs", &append_abi),
            ("src/export.rs", &append_export),
            ("src/context.rs", &append_context),
        ],
        &[],
        false,
    );
    let host = abi_text(todays_abi());
    let s = Scratch::new("compat-unbumped");
    let reason = format!(
        "built against plugin ABI {host}, but its layout differs from this host's (ABI {host}) in `PluginModule`: the plugin's has 5 fields, this host's 4: rebuild the plugin against plughost-api 1.x (a released one)"
    );
    refused_everywhere(&s, &unbumped.plugin, &reason);
    // abi_stable's own report, in full, at debug level.
    let config = s.path("plugins.toml");
    let out = run_with_env(
        &["run", config.to_str().unwrap()],
        "",
        &[("RUST_LOG", "plughost::library=debug")],
    );
    let err = stderr(&out);
    assert!(err.contains("abi_stable's report:"), "{err}");
    assert!(err.contains("Error:too many fields"), "{err}");
}

/// Today's plughost.h with a field appended to the plugin descriptor and
/// its minor bumped, as the next C ABI minor would do it.
fn appended_header(s: &Scratch) -> PathBuf {
    let header = read(&root().join("ffi/include/plughost.h"));
    let minor = header
        .lines()
        .find_map(|l| l.strip_prefix("#define PLUGHOST_ABI_MINOR "))
        .expect("PLUGHOST_ABI_MINOR")
        .to_owned();
    let next: u32 = minor.parse::<u32>().unwrap() + 1;
    let header = header.replace(
        &format!("#define PLUGHOST_ABI_MINOR {minor}\n"),
        &format!("#define PLUGHOST_ABI_MINOR {next}\n"),
    );
    let end = header
        .find("} plughost_plugin;")
        .expect("the descriptor's end");
    let header = format!(
        "{}  /* Appended by tests/compat.rs. */\n  int32_t (*compat_future)(void *instance);\n{}",
        &header[..end],
        &header[end..]
    );
    let dir = s.path("include");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plughost.h"), header).unwrap();
    dir
}

#[test]
fn a_c_plugin_built_against_a_newer_header_loads_fully_or_partly() {
    let s = Scratch::new("compat-c-newer");
    let include = appended_header(&s);
    let host_minor: u32 = plughost_ffi_minor();
    let newer = format!("1.{}", host_minor + 1);
    // Leaving the new field NULL, it uses nothing this host lacks ...
    let plain = cc_compat(&s, &include, "plain", &[]);
    // ... setting it, it offers a capability this host will not call.
    let future = cc_compat(&s, &include, "future", &["-DCOMPAT_FUTURE"]);
    let config = compat_config(
        &s,
        [
            compat_instance("plain", &plain),
            compat_instance("future", &future),
        ],
    );
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    let unchecked = "(config not checked: this plugin reads it only when it starts)";
    assert_eq!(
        lines[..2],
        [
            format!(
                "plain: ok: compat-c {newer} (c, plughost.h {newer}) from {} {unchecked}",
                plain.display()
            ),
            format!(
                "future: ok: compat-c {newer} (c, plughost.h {newer}) from {} (partly supported: this host speaks C ABI 1.{host_minor}; what the plugin sets beyond it is not called) {unchecked}",
                future.display()
            ),
        ]
    );
    let events = [
        event("compat.ping", json!(1)),
        event("compat.fail", json!(2)),
        event("compat.ping", json!(3)),
    ]
    .concat();
    let (health, out, log) = run_compat(&s, &config, &["plain", "future"], &events, 4);
    assert!(out.status.success(), "{log}");
    assert_eq!(answers(&s).len(), 4);
    for (name, health) in ["plain", "future"].iter().zip(&health) {
        assert_eq!(
            health["plugins"][0]["message"],
            format!("C ABI {newer}, 3 events"),
            "{name}"
        );
        let row = summary_row(&out, name);
        assert_eq!((row.processed, row.failed), (2, 1), "{name}");
    }
    assert!(
        log.contains("libfuture.so: built against plughost.h 1."),
        "a warning when it loads:\n{log}"
    );
}

/// This host's C ABI minor, from its header.
fn plughost_ffi_minor() -> u32 {
    read(&root().join("ffi/include/plughost.h"))
        .lines()
        .find_map(|l| l.strip_prefix("#define PLUGHOST_ABI_MINOR "))
        .expect("PLUGHOST_ABI_MINOR")
        .parse()
        .unwrap()
}

#[test]
fn the_version_names_the_plugin_abis_this_host_speaks() {
    let out = run(&["--version"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "plughost {} (Rust plugin ABI {}, C plugin ABI 1.{})\n",
            env!("CARGO_PKG_VERSION"),
            abi_text(todays_abi()),
            plughost_ffi_minor()
        )
    );
}

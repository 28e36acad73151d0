//! Loading: finding libraries, telling plugins from other files, refusing
//! bad ones with one clear line, and several plugins in one host.

mod common;

use common::*;
use serde_json::json;

#[test]
fn two_different_plugins_and_two_instances_of_one_library_run_side_by_side() {
    let s = Scratch::new("two-plugins");
    let config = Config::new()
        .plugin(logger("all", &s.path("all.log")).subscribe(["orders.>", "counter.summary"]))
        .plugin(logger("eu", &s.path("eu.log")).subscribe(["orders.*.eu"]))
        .plugin(Plugin::new("count", "counter").subscribe(["orders.>"]))
        .write(&s);
    let events = [
        event("orders.created", json!({"id": 1})),
        event("orders.created.eu", json!({"id": 2})),
        event("orders.created.us", json!({"id": 3})),
    ]
    .concat();
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], &events);
    assert!(out.status.success(), "{}", stderr(&out));

    // Two instances of the logger library, each with its own config.
    let all = s.log_lines("all.log");
    let eu = s.log_lines("eu.log");
    let topics = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .map(|l| l["topic"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        topics(&all),
        [
            "orders.created",
            "orders.created.eu",
            "orders.created.us",
            "counter.summary"
        ]
    );
    assert_eq!(topics(&eu), ["orders.created.eu"]);
    // A different library in the same host did its own work.
    let summary = &all[3];
    assert_eq!(summary["source"], "count");
    assert_eq!(summary["payload"]["total"], 3);
}

#[test]
fn check_names_each_library_it_opened() {
    // abi_stable's `load_from_file` would hand back the first library for
    // every path; each line must name its own plugin.
    let s = Scratch::new("check");
    let config = Config::new()
        .plugin(logger("a", &s.path("a.log")))
        .plugin(Plugin::new("b", "counter"))
        .plugin(Plugin::new("c", "chaos"))
        .plugin(Plugin::new("off", "does-not-exist").enabled(false))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per plugin:\n{text}");
    assert!(
        lines[0].starts_with("a: ok: logger 0.1.0 (rust, plughost-api ABI 1.1) from "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("b: ok: counter 0.1.0 (rust, "),
        "{text}"
    );
    assert!(lines[2].starts_with("c: ok: chaos 0.1.0 (rust, "), "{text}");
    assert_eq!(lines[3], "off: disabled (not checked)");
    // `check` runs no plugin: the logger, whose init creates its file at
    // this absolute path, did not even create it.
    assert!(!s.path("a.log").exists(), "check ran the logger's init");
}

#[test]
fn discover_lists_plugins_and_says_why_others_are_not() {
    let s = Scratch::new("discover");
    std::fs::copy(plugin_path("counter"), s.path("libcounter.so")).unwrap();
    cc_shared(&s, "plain", "int plain_answer(void) { return 42; }\n");
    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    // Exit 1: a file listed cannot be used (`--help` says so).
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("libcounter.so: counter 0.1.0 (rust, plughost-api ABI 1.1): fully supported"),
        "{text}"
    );
    assert!(
        text.contains("libplain.so: not usable: not a plughost plugin"),
        "{text}"
    );
    // Only plugins: exit 0.
    std::fs::remove_file(s.path("libplain.so")).unwrap();
    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    let help = run(&["discover", "--help"], "");
    assert!(
        stdout(&help).contains("Exits 1 when any file listed cannot be used"),
        "{}",
        stdout(&help)
    );
}

#[test]
fn a_missing_library_lists_every_place_it_looked() {
    let s = Scratch::new("missing");
    let config = Config::new()
        .plugin_dirs(["first", "/opt/second"])
        .plugin(Plugin::new("x", "nowhere"))
        .write(&s);
    let out = run(&["run", config.to_str().unwrap()], "");
    let line = assert_one_line_error(&out);
    let first = s.path("first/libnowhere.so");
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: library `nowhere` not found; looked for {}, /opt/second/libnowhere.so",
            first.display()
        )
    );
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused_in_one_line() {
    let s = Scratch::new("not-a-plugin");
    let plain = cc_shared(&s, "plain", "int plain_answer(void) { return 42; }\n");
    let mut candidates = vec![plain];
    candidates.extend(system_libz());
    for library in candidates {
        let config = Config::new().plugin(plugin_at(&library)).write(&s);
        let out = run(&["run", config.to_str().unwrap()], "");
        let line = assert_one_line_error(&out);
        assert_eq!(
            line,
            format!(
                "error: plugin `x`: {}: not a plughost plugin: it exports no plugin entry point (a Rust plugin needs `plughost_api::export_plugin!`, a C plugin `plughost_plugin_entry`)",
                library.display()
            )
        );
    }
}

/// The system's libz, a real shared library that is not a plugin: where the
/// dynamic loader's cache says it is, else the usual places; `None` without one.
fn system_libz() -> Option<std::path::PathBuf> {
    let cache = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| {
            std::process::Command::new("/sbin/ldconfig")
                .arg("-p")
                .output()
        })
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    // Lines look like `\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1`;
    // a multilib system also lists other architectures' copies, which the
    // host would refuse for another reason.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "AArch64",
        _ => "",
    };
    let from_cache = cache.lines().filter_map(|line| {
        let (name, path) = line.trim().split_once(" => ")?;
        (name.starts_with("libz.so.1 ") && name.contains(arch))
            .then(|| std::path::PathBuf::from(path.trim()))
    });
    let usual = [
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib64/libz.so.1",
        "/usr/lib/libz.so.1",
    ]
    .map(std::path::PathBuf::from);
    from_cache.chain(usual).find(|p| p.exists())
}

#[test]
fn files_that_are_not_libraries_are_refused_with_their_own_reason() {
    let s = Scratch::new("bad-files");
    s.write("libempty.so", "");
    s.write(
        "libgarbage.so",
        "this is not an ELF file, just text that is long enough to be read as one",
    );
    std::fs::create_dir(s.path("libdir.so")).unwrap();
    let cases = [
        ("libempty.so", "empty file, not a plugin library"),
        ("libgarbage.so", "not a shared library (no ELF header)"),
        ("libdir.so", "is a directory, not a plugin library"),
    ];
    for (file, reason) in cases {
        let config = Config::new().plugin(plugin_at(&s.path(file))).write(&s);
        let out = run(&["run", config.to_str().unwrap()], "");
        let line = assert_one_line_error(&out);
        assert_eq!(
            line,
            format!("error: plugin `x`: {}: {reason}", s.path(file).display())
        );
    }
}

#[test]
fn a_failing_init_is_one_clear_line_and_exit_1() {
    let s = Scratch::new("fail-init");
    let config = Config::new()
        .plugin(logger("log", &s.path("log.jsonl")).subscribe([">"]))
        .plugin(Plugin::new("bad", "chaos").config(json!({"fail_init": true})))
        .write(&s);
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    let line = assert_one_line_error(&out);
    assert_eq!(
        line,
        format!(
            "error: plugin `bad` ({}) failed to initialize: fail_init is set",
            plugin_path("chaos").display()
        )
    );
}

#[test]
fn a_plugin_config_the_plugin_refuses_is_an_init_error() {
    let s = Scratch::new("bad-plugin-config");
    let config = Config::new()
        .plugin(Plugin::new("log", "logger").config(json!({"pth": "x"})))
        .write(&s);
    let out = run(&["run", config.to_str().unwrap()], "");
    let line = assert_one_line_error(&out);
    assert_eq!(
        line,
        format!(
            "error: plugin `log` ({}) failed to initialize: invalid config: unknown field `pth`, expected `path` or `fsync` at line 1 column 6",
            plugin_path("logger").display()
        )
    );
}

fn copy_plugin(s: &Scratch, name: &str) -> std::path::PathBuf {
    let to = s.path(&format!("lib{name}.so"));
    std::fs::copy(plugin_path(name), &to).unwrap();
    to
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The instance `x` of the library at `path`, with no other key.
fn plugin_at(path: &std::path::Path) -> Plugin {
    Plugin::new("x", path)
}

#[test]
fn a_world_writable_library_is_refused_unless_explicitly_allowed() {
    let s = Scratch::new("world-writable");
    let library = copy_plugin(&s, "counter");
    chmod(&library, 0o666);
    let config = Config::new().plugin(plugin_at(&library)).write(&s);
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: is writable by others (mode 666): fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin",
            library.display()
        )
    );
    let config = Config::new()
        .plugin(plugin_at(&library).allow_insecure_permissions(true))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_library_in_a_world_writable_directory_is_refused() {
    let s = Scratch::new("writable-dir");
    let dir = s.path("open");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o777);
    let library = dir.join("libcounter.so");
    std::fs::copy(plugin_path("counter"), &library).unwrap();
    let config = Config::new().plugin(plugin_at(&library)).write(&s);
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert!(
        line.contains(&format!(
            "its directory {} is writable by others",
            dir.display()
        )),
        "{line}"
    );
}

fn sha256_hex(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

#[test]
fn a_sha256_pin_is_checked_before_loading() {
    let s = Scratch::new("sha256");
    let library = copy_plugin(&s, "counter");
    let good = sha256_hex(&library);
    let config = Config::new()
        .plugin(plugin_at(&library).sha256(&good))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    let wrong = format!(
        "{}{}",
        &good[..63],
        if good.ends_with('0') { '1' } else { '0' }
    );
    let config = Config::new()
        .plugin(plugin_at(&library).sha256(&wrong))
        .write(&s);
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: sha256 mismatch: plugins.toml pins {wrong}, the file is {good}; refusing to load it",
            library.display()
        )
    );
    let config = Config::new()
        .plugin(plugin_at(&library).sha256("abc"))
        .write(&s);
    let line = assert_one_line_error(&run(&["check", config.to_str().unwrap()], ""));
    assert!(
        line.ends_with("`sha256` must be 64 hexadecimal digits"),
        "{line}"
    );
}

#[test]
fn truncated_foreign_and_dangling_libraries_are_each_refused_with_their_own_reason() {
    let s = Scratch::new("malformed-elf");
    let whole = std::fs::read(plugin_path("counter")).unwrap();
    std::fs::write(s.path("libtruncated.so"), &whole[..5000]).unwrap();
    let mut foreign = whole.clone();
    foreign[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = aarch64
    std::fs::write(s.path("libforeign.so"), &foreign).unwrap();
    std::os::unix::fs::symlink(s.path("gone.so"), s.path("libdangling.so")).unwrap();
    let cases = [
        (
            "libtruncated.so",
            "truncated: a segment ends at byte ".to_owned(),
        ),
        (
            "libforeign.so",
            "built for aarch64, but this host is x86_64".to_owned(),
        ),
        (
            "libdangling.so",
            "dangling symbolic link: its target does not exist".to_owned(),
        ),
    ];
    for (file, reason) in &cases {
        let config = Config::new().plugin(plugin_at(&s.path(file))).write(&s);
        let out = run(&["run", config.to_str().unwrap()], "");
        let line = assert_one_line_error(&out);
        let prefix = format!("error: plugin `x`: {}: {reason}", s.path(file).display());
        assert!(line.starts_with(&prefix), "{line}\nwanted: {prefix}");
    }
}

#[test]
fn check_reports_every_problem_of_a_config_at_once() {
    let s = Scratch::new("check-all");
    s.write("libempty.so", "");
    let writable = copy_plugin(&s, "counter");
    chmod(&writable, 0o666);
    let config = Config::new()
        .plugin(Plugin::new("fine", "logger").config(json!({"path": "x"})))
        .plugin(Plugin::new("missing", "nowhere"))
        .plugin(Plugin::new("empty", s.path("libempty.so")))
        .plugin(Plugin::new("writable", &writable))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("fine: ok: logger"));
    assert!(lines[1].starts_with("missing: error: library `nowhere` not found"));
    assert!(lines[2].ends_with("empty file, not a plugin library"));
    assert!(lines[3].contains("is writable by others"));
    assert!(stderr(&out).contains("error: 3 of 4 plugin(s) cannot be loaded"));
}

#[test]
fn check_has_each_rust_plugin_read_its_config_without_running_it() {
    let s = Scratch::new("check-config");
    let config = Config::new()
        .plugin(
            Plugin::new("bridge", "nats_bridge")
                .config(json!({"url": "nats://127.0.0.1:1", "export": ["orders.>"]})),
        )
        .plugin(Plugin::new("no-consumer", "nats_bridge").config(json!({
            "url": "nats://127.0.0.1:1",
            "import": ["orders.>"],
            "jetstream": "ORDERS",
        })))
        .plugin(Plugin::new("typo", "chaos").config(json!({"panic_evry": 3})))
        .plugin(Plugin::new("echo", "echo_c"))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per plugin:\n{text}");
    let bridge = plugin_path("nats_bridge").display().to_string();
    assert_eq!(
        lines[0],
        format!("bridge: ok: nats-bridge 0.1.0 (rust, plughost-api ABI 1.1) from {bridge}")
    );
    assert!(
        lines[1].starts_with(&format!(
            "no-consumer: error: {bridge}: invalid config: `jetstream` imports need `consumer`: a durable consumer name unique to this host"
        )) && lines[1].ends_with("(in [plugin.config])"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "typo: error: {}: invalid config: unknown field `panic_evry`",
            plugin_path("chaos").display()
        )),
        "{text}"
    );
    // A C plugin reads its config only in its init, which check never runs.
    assert!(
        lines[3].starts_with("echo: ok: echo_c 0.1.0 (c, ")
            && lines[3].ends_with("(config not checked: this plugin reads it only when it starts)"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("error: 2 of 4 plugin(s) cannot be loaded or refuse their config"),
        "{}",
        stderr(&out)
    );
}

/// Write `text` to `path` unless it already holds exactly that, so cargo's
/// mtime-based fingerprints see an unchanged fixture as unchanged.
fn write_if_changed(path: &std::path::Path, text: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// plughost-api's own version, as its Cargo.toml declares it: fixture
/// plugins are built against a copy of it under this version (tests of
/// other versions are in tests/compat.rs).
fn api_crate_version() -> String {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api/Cargo.toml");
    let manifest: toml::Table = std::fs::read_to_string(manifest).unwrap().parse().unwrap();
    manifest["package"]["version"].as_str().unwrap().to_owned()
}

/// The panic strategy a fixture plugin is built with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Panic {
    Unwind,
    /// `-C panic=abort` for the plugin crate itself (what `panic = "abort"`
    /// in a profile does to it; its dependencies may stay unwind-built).
    Abort,
}

/// Build, at test time, a plugin against a copy of this workspace's
/// `plugin-api/` whose package version is `api_version`, with the panic
/// strategy `panic`, and return its library. The plugin panics on an event
/// on `boom`. The fixture is a workspace of its own in `CARGO_TARGET_TMPDIR`,
/// built offline with the workspace's lockfile into the test binary's target
/// directory, so abi_stable and the rest come from cargo's cache.
fn fixture_plugin(api_version: &str, panic: Panic) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let suffix = match panic {
        Panic::Unwind => "",
        Panic::Abort => "-panic-abort",
    };
    let fixture = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fixture-plughost-api-{api_version}{suffix}"));
    let read_toml = |path: std::path::PathBuf| -> toml::Table {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .parse()
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    };

    // The workspace: the root's shared package fields, dependencies, lints
    // and profiles (equal profiles let cargo reuse the cached dependencies).
    let main = read_toml(root.join("Cargo.toml"));
    let mut workspace = main["workspace"].as_table().unwrap().clone();
    workspace.remove("default-members");
    workspace.insert(
        "members".into(),
        toml::Value::Array(vec!["plugin-api".into(), "plugin".into()]),
    );
    let dependencies = workspace["dependencies"].as_table_mut().unwrap();
    dependencies.remove("plughost-ffi");
    dependencies.insert(
        "plughost-api".into(),
        toml::Value::Table(toml::toml! { path = "plugin-api" }),
    );
    let mut manifest = toml::Table::new();
    manifest.insert("workspace".into(), toml::Value::Table(workspace));
    if let Some(profile) = main.get("profile") {
        manifest.insert("profile".into(), profile.clone());
    }
    write_if_changed(&fixture.join("Cargo.toml"), manifest.to_string().as_bytes());
    // The same versions as the workspace, which cargo then trims to this
    // fixture's needs (a lockfile change alone rebuilds nothing).
    let lock = std::fs::read(root.join("Cargo.lock")).expect("the workspace's Cargo.lock");
    write_if_changed(&fixture.join("Cargo.lock"), &lock);

    // plugin-api/ as it is now, under another version number.
    let mut api = read_toml(root.join("plugin-api/Cargo.toml"));
    let package = api["package"].as_table_mut().unwrap();
    package.insert("version".into(), api_version.into());
    api.remove("dev-dependencies");
    write_if_changed(
        &fixture.join("plugin-api/Cargo.toml"),
        api.to_string().as_bytes(),
    );
    write_if_changed(
        &fixture.join("plugin-api/README.md"),
        &std::fs::read(root.join("plugin-api/README.md")).unwrap(),
    );
    for entry in std::fs::read_dir(root.join("plugin-api/src")).unwrap() {
        let entry = entry.unwrap();
        write_if_changed(
            &fixture.join("plugin-api/src").join(entry.file_name()),
            &std::fs::read(entry.path()).unwrap(),
        );
    }

    // The smallest plugin there is, under a name of its own per version:
    // fixtures build into one target directory, side by side.
    let package = format!(
        "plughost-fixture-api-{}{suffix}",
        api_version.replace('.', "-")
    );
    write_if_changed(
        &fixture.join("plugin/Cargo.toml"),
        format!(
            r#"[package]
name = "{package}"
version = "0.1.0"
edition.workspace = true
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plughost-api.workspace = true
"#
        )
        .as_bytes(),
    );
    write_if_changed(
        &fixture.join("plugin/src/lib.rs"),
        br#"use plughost_api::{Context, Event, NoConfig, Plugin, Result, export_plugin};

struct Newer;

impl Plugin for Newer {
    type Config = NoConfig;
    fn init(_: NoConfig, _: &Context) -> Result<Self> {
        Ok(Newer)
    }
    fn on_event(&mut self, event: &Event<'_>, _: &Context) -> Result<()> {
        if event.topic() == "boom" {
            panic!("boom");
        }
        Ok(())
    }
}

export_plugin!(Newer);
"#,
    );

    let profile = profile_dir();
    let started = std::time::Instant::now();
    let mut cargo =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let build = match panic {
        Panic::Unwind => "build",
        Panic::Abort => "rustc",
    };
    cargo
        .current_dir(&fixture)
        .args([build, "--quiet", "--offline", "-p", &package])
        .arg("--target-dir")
        .arg(profile.parent().expect("profile dir has a parent"));
    if profile.file_name().is_some_and(|name| name == "release") {
        cargo.arg("--release");
    }
    if panic == Panic::Abort {
        cargo.args(["--lib", "--", "-C", "panic=abort"]);
    }
    let output = cargo.output().expect("run cargo");
    assert!(
        output.status.success(),
        "building the fixture in {} failed:\n{}",
        fixture.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("fixture plugin built in {:?}", started.elapsed());
    profile.join(format!("lib{}.so", package.replace('-', "_")))
}

/// How often the host handed a plugin library to the dynamic loader, from
/// glibc's `LD_DEBUG=files` trace of a `plughost run` of `config`: the host
/// loads every library through a descriptor of its own, and glibc prints one
/// `file=/proc/self/fd/N [0];  dynamically loaded by` line per such dlopen
/// that it has not seen under that name, before it even looks at the file.
fn dlopens_of_plugin_libraries(config: &std::path::Path) -> usize {
    let out = run_with_env(
        &["run", config.to_str().unwrap(), "--events", "-"],
        "",
        &[("LD_DEBUG", "files")],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    err.lines()
        .filter(|l| l.contains("file=/proc/self/fd/") && l.contains("dynamically loaded by"))
        .count()
}

#[test]
fn a_library_listed_twice_is_opened_once() {
    let s = Scratch::new("opened-once");
    let counter = plugin_path("counter");
    let link = s.path("libcounter-link.so");
    std::os::unix::fs::symlink(&counter, &link).unwrap();
    // Two instances by bare name and a third through a symbolic link: one file.
    let config = Config::new()
        .plugin(Plugin::new("one", "counter"))
        .plugin(Plugin::new("two", "counter"))
        .plugin(Plugin::new("three", &link))
        .write(&s);
    assert_eq!(dlopens_of_plugin_libraries(&config), 1);

    // The observation sees every library the host loads: another library
    // beside the two instances is a second dlopen.
    let config = Config::new()
        .plugin(Plugin::new("one", "counter"))
        .plugin(Plugin::new("two", "counter"))
        .plugin(Plugin::new("other", "chaos"))
        .write(&s);
    assert_eq!(dlopens_of_plugin_libraries(&config), 2);
}

// Hostile libraries: inspecting or listing a library runs none of its code
// in the inspecting process, and a library that crashes, exits or hangs
// while it loads is reported as such, with the listing going on.

/// A shared library that is no plugin, with a constructor that writes
/// `marker`: proof that its code ran.
fn library_with_a_marking_constructor(s: &Scratch, marker: &std::path::Path) -> std::path::PathBuf {
    cc_shared(
        s,
        "marking",
        &format!(
            "#include <stdio.h>\n\
             __attribute__((constructor)) static void mark(void) {{\n\
                 FILE *f = fopen({:?}, \"w\");\n\
                 if (f) {{ fputs(\"ran\", f); fclose(f); }}\n\
             }}\n\
             int marking_answer(void) {{ return 42; }}\n",
            marker.display().to_string()
        ),
    )
}

#[test]
fn no_code_of_a_library_that_is_not_a_plugin_ever_runs() {
    let s = Scratch::new("marker");
    let marker = s.path("constructor-ran");
    let library = library_with_a_marking_constructor(&s, &marker);
    let reason = "not a plughost plugin: it exports no plugin entry point (a Rust plugin needs `plughost_api::export_plugin!`, a C plugin `plughost_plugin_entry`)";

    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!("{}: not usable: {reason}\n", library.display())
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!marker.exists(), "discover ran the library's constructor");

    let config = Config::new().plugin(plugin_at(&library)).write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!("x: error: {}: {reason}\n", library.display())
    );
    assert!(!marker.exists(), "check ran the library's constructor");
    let line = assert_one_line_error(&run_refused(&config));
    assert_eq!(
        line,
        format!("error: plugin `x`: {}: {reason}", library.display())
    );
    assert!(!marker.exists(), "run ran the library's constructor");
}

/// `plughost run CONFIG --events -` with no events: ends by itself even
/// when the host (wrongly) accepts the config.
fn run_refused(config: &std::path::Path) -> std::process::Output {
    run(&["run", config.to_str().unwrap(), "--events", "-"], "")
}

/// `plughost ARGS...`, failing the test (rather than hanging it) if it is
/// not done within 60 s.
fn run_bounded(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(plughost_bin())
        .args(args)
        .current_dir(scratch_root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start plughost");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("plughost {args:?} hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

#[test]
fn discover_reports_a_library_that_crashes_exits_or_hangs_while_loading_and_goes_on() {
    let s = Scratch::new("hostile-discover");
    let dir = s.path("plugins");
    std::fs::create_dir(&dir).unwrap();
    let hostile = Scratch { dir: dir.clone() };
    cc_fixture(
        &hostile,
        "hostile",
        "a_abort",
        &["-DHOSTILE_CONSTRUCTOR_ABORT"],
    );
    cc_fixture(
        &hostile,
        "hostile",
        "b_exit",
        &["-DHOSTILE_CONSTRUCTOR_EXIT"],
    );
    cc_fixture(&hostile, "hostile", "c_blocks", &["-DHOSTILE_ENTRY_BLOCKS"]);
    cc_fixture(
        &hostile,
        "hostile",
        "d_wild",
        &["-DHOSTILE_ENTRY_BAD_POINTER"],
    );
    std::fs::copy(plugin_path("counter"), dir.join("libe_counter.so")).unwrap();
    cc_fixture(&hostile, "hostile", "f_fine", &[]);

    let out = run_bounded(&["discover", "--inspect-timeout", "2s", dir.to_str().unwrap()]);
    let text = stdout(&out);
    let at = |name: &str| dir.join(name).display().to_string();
    let doing_the_same = "a constructor or its entry point would do the same to the host";
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            format!(
                "{}: not usable: crashed while it was being loaded (killed by SIGABRT): {doing_the_same}",
                at("liba_abort.so")
            ),
            format!(
                "{}: not usable: ended the process that loaded it (exit status 0) before it could be inspected: {doing_the_same}",
                at("libb_exit.so")
            ),
            format!(
                "{}: not usable: did not finish loading within 2s (a constructor or its entry point does not return), so its inspection was stopped; it would hang the host",
                at("libc_blocks.so")
            ),
            format!(
                "{}: not usable: crashed while it was being loaded (killed by SIGSEGV): {doing_the_same}",
                at("libd_wild.so")
            ),
            format!(
                "{}: counter 0.1.0 (rust, plughost-api ABI 1.1): fully supported",
                at("libe_counter.so")
            ),
            format!(
                "{}: hostile 0.0.1 (c, plughost.h 1.3): fully supported",
                at("libf_fine.so")
            ),
        ],
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_no_raw_panic(&stderr(&out));
}

#[test]
fn check_inspects_each_library_in_a_child_process_with_a_time_limit() {
    let s = Scratch::new("hostile-check");
    let blocks = cc_fixture(&s, "hostile", "blocks", &["-DHOSTILE_ENTRY_BLOCKS"]);
    let aborts = cc_fixture(&s, "hostile", "aborts", &["-DHOSTILE_CONSTRUCTOR_ABORT"]);
    let config = Config::new()
        .plugin(Plugin::new("blocks", &blocks))
        .plugin(Plugin::new("aborts", &aborts))
        .plugin(Plugin::new("count", "counter"))
        .write(&s);
    let out = run_bounded(&["check", "--inspect-timeout", "1s", config.to_str().unwrap()]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0],
        format!(
            "blocks: error: {}: did not finish loading within 1s (a constructor or its entry point does not return), so its inspection was stopped; it would hang the host",
            blocks.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "aborts: error: {}: crashed while it was being loaded (killed by SIGABRT)",
            aborts.display()
        )),
        "{text}"
    );
    assert!(lines[2].starts_with("count: ok: counter 0.1.0"), "{text}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: 2 of 3 plugin(s) cannot be loaded or refuse their config"),
        "{}",
        stderr(&out)
    );

    // The limit has a bound.
    for bad in ["0s", "2h", "soon"] {
        let out = run(
            &["check", "--inspect-timeout", bad, config.to_str().unwrap()],
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn a_descriptor_cannot_forge_lines_of_check_or_discover() {
    let s = Scratch::new("forged-name");
    let library = cc_fixture(&s, "hostile", "forged", &["-DHOSTILE_FORGED_NAME"]);
    let escaped =
        "hostile\\nx: ok: forged 6.6.6 (c, plughost.h 1.2) from /nowhere\\u{1b}[2J 1.0\\r\\n";
    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!(
            "{}: {escaped} (c, plughost.h 1.3): fully supported\n",
            library.display()
        )
    );
    let config = Config::new().plugin(plugin_at(&library)).write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "x: ok: {escaped} (c, plughost.h 1.3) from {} (config not checked: this plugin reads it only when it starts)\n",
            library.display()
        )
    );
}

#[test]
fn a_closed_pipe_ends_discover_and_ctl_quietly() {
    let s = Scratch::new("broken-pipe");
    for i in 0..3 {
        std::fs::copy(plugin_path("counter"), s.path(&format!("lib{i}.so"))).unwrap();
    }
    // The reader is gone before the first line is written, as with `| head`
    // once it has read enough.
    let closed = |args: &[&str]| {
        let mut child = std::process::Command::new(plughost_bin())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start plughost");
        drop(child.stdout.take());
        child.wait_with_output().expect("wait for plughost")
    };
    let out = closed(&["discover", s.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    let socket = s.path("host.sock");
    let config = Config::new()
        .control_socket(&socket)
        .plugin(Plugin::new("count", "counter"))
        .write(&s);
    let mut host = Running::start(&config);
    for command in [&["list"][..], &["status"], &["ready"], &["--json", "list"]] {
        let args: Vec<&str> = ["ctl", "--socket", socket.to_str().unwrap()]
            .into_iter()
            .chain(command.iter().copied())
            .collect();
        let out = closed(&args);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{command:?}");
    }
    drop(host.stdin.take());
    let (out, _) = host.wait(std::time::Duration::from_secs(30));
    assert!(out.status.success());
}

#[test]
fn a_platform_file_name_given_as_library_says_where_it_looked_and_what_to_write() {
    let s = Scratch::new("bare-file-name");
    let config = Config::new()
        .plugin(Plugin::new("x", "libcounter.so"))
        .write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: no such file: `libcounter.so` names a file in the config's directory {}; to look for the library in plugin_dirs ({} is there), write library = \"counter\"",
            s.path("libcounter.so").display(),
            s.dir.display(),
            plugin_path("counter").display()
        )
    );
    // Found nowhere: the same advice, without the pointer.
    let config = Config::new()
        .plugin(Plugin::new("x", "libnowhere.so"))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!(
            "x: error: {}: no such file: `libnowhere.so` names a file in the config's directory {}; to look for the library in plugin_dirs, write library = \"nowhere\"\n",
            s.path("libnowhere.so").display(),
            s.dir.display()
        )
    );
}

#[test]
fn a_link_inside_a_directory_others_can_write_is_refused() {
    let s = Scratch::new("unsafe-link");
    let safe = s.path("safe");
    std::fs::create_dir(&safe).unwrap();
    let library = safe.join("libcounter.so");
    std::fs::copy(plugin_path("counter"), &library).unwrap();
    // The link sits in a directory anyone can write: anyone can point it
    // at another library, whatever the target's own directory is like.
    let open = s.path("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let link = open.join("libcounter.so");
    std::os::unix::fs::symlink(&library, &link).unwrap();
    let hint =
        "fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin";
    let config = Config::new().plugin(plugin_at(&link)).write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: directory {} on the way to it is writable by others: {hint}",
            link.display(),
            open.display()
        )
    );
    let config = Config::new()
        .plugin(plugin_at(&link).allow_insecure_permissions(true))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));

    // A directory others can write higher up the path is as bad ...
    let deep = open.join("sub");
    std::fs::create_dir(&deep).unwrap();
    chmod(&deep, 0o755);
    std::fs::copy(plugin_path("counter"), deep.join("libcounter.so")).unwrap();
    let config = Config::new()
        .plugin(plugin_at(&deep.join("libcounter.so")))
        .write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert!(
        line.ends_with(&format!(
            "directory {} on the way to it is writable by others: {hint}",
            open.display()
        )),
        "{line}"
    );
    // ... and so is one a relative link leads through.
    let via = s.path("via");
    std::fs::create_dir(&via).unwrap();
    std::os::unix::fs::symlink("../open/sub/libcounter.so", via.join("libcounter.so")).unwrap();
    let config = Config::new()
        .plugin(plugin_at(&via.join("libcounter.so")))
        .write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert!(
        line.contains(&format!("directory {} on the way", open.display())),
        "{line}"
    );
    // A sticky one (like /tmp) is fine: others cannot replace what is ours.
    chmod(&open, 0o1777);
    let config = Config::new().plugin(plugin_at(&link)).write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_directory_on_the_way_owned_by_another_user_is_refused() {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can give a directory to another user");
        return;
    }
    let s = Scratch::new("foreign-dir");
    let theirs = s.path("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::copy(plugin_path("counter"), theirs.join("libcounter.so")).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), None).unwrap();
    let config = Config::new()
        .plugin(plugin_at(&theirs.join("libcounter.so")))
        .write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert!(
        line.ends_with(&format!(
            "its directory {} is owned by uid 4242, not by this user or root: fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin",
            theirs.display()
        )),
        "{line}"
    );
}

/// A library file owned by another user (not root) is refused: whoever owns
/// it can change the code the host runs. Tests run as root, so the file can
/// be given to `nobody`.
#[test]
fn a_library_owned_by_another_user_is_refused_unless_explicitly_allowed() {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let s = Scratch::new("foreign-file");
    let library = copy_plugin(&s, "counter");
    chmod(&library, 0o644);
    std::os::unix::fs::chown(&library, Some(65534), Some(65534)).unwrap();
    let config = Config::new().plugin(plugin_at(&library)).write(&s);
    let refusal = format!(
        "{}: is owned by uid 65534, not by this user or root: fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin",
        library.display()
    );
    let line = assert_one_line_error(&run_refused(&config));
    assert_eq!(line, format!("error: plugin `x`: {refusal}"));
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(1), format!("x: error: {refusal}\n"))
    );
    let config = Config::new()
        .plugin(plugin_at(&library).allow_insecure_permissions(true))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
}

/// A directory anyone may write to but with the sticky bit (like /tmp) is
/// fine: others cannot remove or replace a file they do not own there. The
/// library in it loads and runs.
#[test]
fn a_library_in_a_sticky_world_writable_directory_loads_and_runs() {
    let s = Scratch::new("sticky-dir");
    let sticky = s.path("sticky");
    std::fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let library = sticky.join("libcounter.so");
    std::fs::copy(plugin_path("counter"), &library).unwrap();
    chmod(&library, 0o644);
    let config = Config::new()
        .plugin(plugin_at(&library).subscribe(["t"]))
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &event("t", json!(1)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_row(&out, "x").processed, 1);
    // Without the sticky bit, the same directory is refused.
    chmod(&sticky, 0o777);
    let line = assert_one_line_error(&run_refused(&config));
    assert!(
        line.contains(&format!(
            "its directory {} is writable by others",
            sticky.display()
        )),
        "{line}"
    );
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused_in_thread_isolation_and_runs_in_a_process() {
    let library = fixture_plugin(&api_crate_version(), Panic::Abort);
    let s = Scratch::new("panic-abort");
    let reason = "built with panic = \"abort\": its first panic would end the host, so it cannot run on a host thread; set isolation = \"process\" for this plugin, or rebuild it with panic = \"unwind\"";
    let config = Config::new()
        .plugin(plugin_at(&library).subscribe(["t"]))
        .write(&s);
    let line = assert_one_line_error(&run_refused(&config));
    assert_eq!(
        line,
        format!("error: plugin `x`: {}: {reason}", library.display())
    );
    let out = run(&["check", config.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!("x: error: {}: {reason}\n", library.display())
    );
    assert_eq!(out.status.code(), Some(1));
    // `discover` cannot know the isolation it will get: it says both.
    let dir = s.path("discover");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&library, dir.join("libabort.so")).unwrap();
    let out = run(&["discover", dir.to_str().unwrap()], "");
    assert_eq!(
        stdout(&out),
        format!(
            "{}: plughost-fixture-api-{}-panic-abort 0.1.0 (rust, plughost-api ABI 1.1): fully supported; built with panic = \"abort\", so it runs only with isolation = \"process\"\n",
            dir.join("libabort.so").display(),
            api_crate_version().replace('.', "-")
        )
    );

    // In a process of its own, a panic ends only that process.
    let config = Config::new()
        .plugin(
            plugin_at(&library)
                .subscribe(["t", "boom"])
                .isolation(Isolation::Process)
                .restart(Restart::Never),
        )
        .write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    let out = run(
        &["run", config.to_str().unwrap(), "--events", "-"],
        &[event("t", json!(1)), event("t", json!(2))].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary_row(&out, "x").processed, 2);
    // The same library built to unwind is refused nowhere.
    let unwinding = fixture_plugin(&api_crate_version(), Panic::Unwind);
    let config = Config::new().plugin(plugin_at(&unwinding)).write(&s);
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
}

/// Each kind of refusal is a `LoadError` variant of its own, so a program
/// that embeds the host matches the kind rather than the text (as
/// abi_stable's loading-error tests do); the message stays the one line
/// users read. Here through `Host::start`, the embedding program's way in.
#[test]
fn each_kind_of_refusal_is_a_load_error_variant_a_program_can_match() {
    use plughost::LoadError;
    let s = Scratch::new("load-error-variants");
    let refusal = |plugin: Plugin| -> LoadError {
        let config = plughost::Config::load(&Config::new().plugin(plugin).write(&s)).unwrap();
        match plughost::Host::start(config) {
            Err(plughost::StartError::Load { cause, .. }) => cause,
            Err(other) => panic!("not a load error: {other}"),
            Ok(host) => {
                host.shutdown();
                panic!("the library was loaded")
            }
        }
    };
    let missing = s.path("libmissing.so");
    let error = refusal(plugin_at(&missing));
    assert!(
        matches!(&error, LoadError::Io { path, .. } if *path == missing),
        "{error:?}"
    );
    assert_eq!(error.reason(), Some("no such file"));
    assert_eq!(
        error.to_string(),
        format!("{}: no such file", missing.display())
    );

    let text = s.write("libtext.so", "not a library\n");
    let error = refusal(plugin_at(&text));
    assert!(matches!(error, LoadError::NotAPlugin { .. }), "{error:?}");

    let writable = copy_plugin(&s, "counter");
    chmod(&writable, 0o666);
    let error = refusal(plugin_at(&writable));
    assert!(
        matches!(error, LoadError::InsecurePermissions { .. }),
        "{error:?}"
    );

    let pinned = copy_plugin(&s, "logger");
    let error = refusal(plugin_at(&pinned).sha256(&"0".repeat(64)));
    assert!(matches!(error, LoadError::HashMismatch { .. }), "{error:?}");

    let other_major = cc_fixture(&s, "versioned", "versioned", &["-DFIXTURE_MAJOR=2"]);
    let error = refusal(plugin_at(&other_major));
    assert!(matches!(error, LoadError::AbiMismatch { .. }), "{error:?}");

    let aborting = fixture_plugin(&api_crate_version(), Panic::Abort);
    let error = refusal(plugin_at(&aborting));
    assert!(matches!(error, LoadError::Incompatible { .. }), "{error:?}");

    let error = refusal(Plugin::new("x", "nowhere"));
    assert!(matches!(error, LoadError::NotFound { .. }), "{error:?}");
    assert_eq!(error.reason(), None);
}

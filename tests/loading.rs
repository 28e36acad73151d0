//! Loading: finding libraries, telling plugins from other files, refusing
//! bad ones with one clear line, and several plugins in one host.

mod common;

use common::*;
use serde_json::json;

#[test]
fn two_different_plugins_and_two_instances_of_one_library_run_side_by_side() {
    let s = Scratch::new("two-plugins");
    let config = s.config(&format!(
        r#"
[[plugin]]
name = "all"
library = "logger"
subscribe = ["orders.>", "counter.summary"]
[plugin.config]
path = {all:?}

[[plugin]]
name = "eu"
library = "logger"
subscribe = ["orders.*.eu"]
[plugin.config]
path = {eu:?}

[[plugin]]
name = "count"
library = "counter"
subscribe = ["orders.>"]
"#,
        all = s.path("all.log").display().to_string(),
        eu = s.path("eu.log").display().to_string(),
    ));
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
    let config = s.config(
        r#"
[[plugin]]
name = "a"
library = "logger"
[plugin.config]
path = "a.log"

[[plugin]]
name = "b"
library = "counter"

[[plugin]]
name = "c"
library = "chaos"

[[plugin]]
name = "off"
library = "does-not-exist"
enabled = false
"#,
    );
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per plugin:\n{text}");
    assert!(
        lines[0].starts_with("a: ok: logger 0.1.0 (rust, plughost-api 0.1.0) from "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("b: ok: counter 0.1.0 (rust, "),
        "{text}"
    );
    assert!(lines[2].starts_with("c: ok: chaos 0.1.0 (rust, "), "{text}");
    assert_eq!(lines[3], "off: disabled (not checked)");
    // `check` runs no plugin: the logger did not even create its file.
    assert!(!s.path("a.log").exists());
}

#[test]
fn discover_lists_plugins_and_says_why_others_are_not() {
    let s = Scratch::new("discover");
    std::fs::copy(plugin_path("counter"), s.path("libcounter.so")).unwrap();
    cc_shared(&s, "plain", "int plain_answer(void) { return 42; }\n");
    let out = run(&["discover", s.dir.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("libcounter.so: counter 0.1.0 (rust, plughost-api 0.1.0): compatible"),
        "{text}"
    );
    assert!(
        text.contains("libplain.so: not usable: not a plughost plugin"),
        "{text}"
    );
}

#[test]
fn a_missing_library_lists_every_place_it_looked() {
    let s = Scratch::new("missing");
    let config = s.write(
        "plugins.toml",
        "[host]\nplugin_dirs = [\"first\", \"/opt/second\"]\n[[plugin]]\nname = \"x\"\nlibrary = \"nowhere\"\n",
    );
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
    candidates.extend(
        [
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            "/lib/x86_64-linux-gnu/libz.so.1",
            "/usr/lib/libz.so.1",
        ]
        .map(std::path::PathBuf::from)
        .into_iter()
        .filter(|p| p.exists())
        .take(1),
    );
    for library in candidates {
        let config = s.config(&format!(
            "[[plugin]]\nname = \"x\"\nlibrary = {:?}\n",
            library.display().to_string()
        ));
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
        let config = s.config(&format!(
            "[[plugin]]\nname = \"x\"\nlibrary = {:?}\n",
            s.path(file).display().to_string()
        ));
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
    let config = s.config(
        r#"
[[plugin]]
name = "log"
library = "logger"
subscribe = [">"]
[plugin.config]
path = "log.jsonl"

[[plugin]]
name = "bad"
library = "chaos"
[plugin.config]
fail_init = true
"#,
    );
    let out = run(&["run", config.to_str().unwrap(), "--events", "-"], "");
    let line = assert_one_line_error(&out);
    assert_eq!(
        line,
        "error: plugin `bad` failed to initialize: fail_init is set"
    );
}

#[test]
fn a_plugin_config_the_plugin_refuses_is_an_init_error() {
    let s = Scratch::new("bad-plugin-config");
    let config = s
        .config("[[plugin]]\nname = \"log\"\nlibrary = \"logger\"\n[plugin.config]\npth = \"x\"\n");
    let out = run(&["run", config.to_str().unwrap()], "");
    let line = assert_one_line_error(&out);
    assert!(
        line.starts_with(
            "error: plugin `log` failed to initialize: invalid config: unknown field `pth`"
        ),
        "{line}"
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

fn plugin_at(path: &std::path::Path, extra: &str) -> String {
    format!(
        "[[plugin]]\nname = \"x\"\nlibrary = {:?}\n{extra}\n",
        path.display().to_string()
    )
}

#[test]
fn a_world_writable_library_is_refused_unless_explicitly_allowed() {
    let s = Scratch::new("world-writable");
    let library = copy_plugin(&s, "counter");
    chmod(&library, 0o666);
    let config = s.config(&plugin_at(&library, ""));
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: is writable by others (mode 666): fix it (chmod o-w / chown), or set allow_insecure_permissions = true for this plugin",
            library.display()
        )
    );
    let config = s.config(&plugin_at(&library, "allow_insecure_permissions = true"));
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
    let config = s.config(&plugin_at(&library, ""));
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
    let config = s.config(&plugin_at(&library, &format!("sha256 = {good:?}")));
    let out = run(&["check", config.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stdout(&out));
    let wrong = format!(
        "{}{}",
        &good[..63],
        if good.ends_with('0') { '1' } else { '0' }
    );
    let config = s.config(&plugin_at(&library, &format!("sha256 = {wrong:?}")));
    let line = assert_one_line_error(&run(&["run", config.to_str().unwrap()], ""));
    assert_eq!(
        line,
        format!(
            "error: plugin `x`: {}: sha256 mismatch: plugins.toml pins {wrong}, the file is {good}; refusing to load it",
            library.display()
        )
    );
    let config = s.config(&plugin_at(&library, "sha256 = \"abc\""));
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
        let config = s.config(&plugin_at(&s.path(file), ""));
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
    let config = s.config(&format!(
        "[[plugin]]\nname = \"fine\"\nlibrary = \"logger\"\n[plugin.config]\npath = \"x\"\n\
         [[plugin]]\nname = \"missing\"\nlibrary = \"nowhere\"\n\
         [[plugin]]\nname = \"empty\"\nlibrary = {:?}\n\
         [[plugin]]\nname = \"writable\"\nlibrary = {:?}\n",
        s.path("libempty.so").display().to_string(),
        writable.display().to_string()
    ));
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
